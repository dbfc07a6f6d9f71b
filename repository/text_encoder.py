"""A model version's own text encoder outside the worker: pooled token states on the CPU.

The gateway's prompt check (services.common.policy.semantic) compares a prompt with the
content policy's concepts in the space of the text encoder that conditions the model. This
opens the version's tokenizer and `text_encoder` ONNX file through the verifying reader (hash
checked, external data only from the version's folder) and mean-pools the token states over the
attention mask, L2-normalised: for a sentence-transformer (the shipped MiniLM) that is its
sentence embedding.

A call runs at the length of its longest text, not at the tokenizer's full padded length: the
pooling reads only unmasked tokens, and the shipped encoder's short prompts are a third of its
24 tokens, so full padding tripled each Submit's encoding (docs/ARCHITECTURE.md, "Content
policies"). The encoder's declared input length is made free for that
(repository/onnx_shapes.py), and kept only where the encoder gives the same states both ways
on probe texts when it loads.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument
from tokenizers import Tokenizer

from repository.onnx_external import OnnxParseError
from repository.onnx_shapes import free_input_axis
from repository.reader import ModelVersion

log = logging.getLogger(__name__)

INPUTS = {"input_ids", "attention_mask"}
# Short and long, one clause and several: states at the shortest length must equal the full length's.
PROBES = ["a", "a red apple", "a smiling cat wearing a tiny wizard hat, pixel art, on a plain background",
          "sprite " * 40]
# Unit vectors: what float32 summation in another order may change, and nothing more.
SAME_STATES_ATOL = 1e-5


class TextEncoder:
    def __init__(self, version: ModelVersion, threads: int = 1):
        m = version.manifest
        if "text_encoder" not in m.components:
            raise ValueError(f"model {version.name}/{version.version} has no text encoder")
        tok = Tokenizer.from_str(version.text("tokenizer"))
        tok.enable_truncation(max_length=m.text_encoder.max_tokens)
        tok.enable_padding(length=m.text_encoder.max_tokens, pad_id=m.text_encoder.pad_token_id)
        self.tokenizer = tok
        verified = version.onnx("text_encoder")
        self.file_sha256 = m.files[verified.name].sha256
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        source: bytes | str = verified.data
        if verified.has_external_data:
            options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                             str(version.path))
            source = str(verified.path)
        self.max_tokens = m.text_encoder.max_tokens
        self.trims = False  # whether calls run at their longest text's length
        try:
            free = free_input_axis(verified.data, INPUTS, 1, "sequence")
            self.session = ort.InferenceSession(free, options, providers=["CPUExecutionProvider"])
            full = self.pooled(PROBES)
            self.trims = True
            trimmed = np.concatenate([self.pooled([p]) for p in PROBES])
            if not np.allclose(full, trimmed, rtol=0.0, atol=SAME_STATES_ATOL):
                raise ValueError(f"states differ by {float(np.abs(full - trimmed).max()):.3g} at the shorter length")
        except (OnnxParseError, ValueError, Fail, InvalidArgument) as exc:
            log.warning("text encoder of %s/%s: runs at its full length %d (%s)", version.name, version.version,
                        self.max_tokens, exc)
            self.trims = False
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])

    def pooled(self, texts: list[str]) -> np.ndarray:
        """[N, hidden] unit vectors, one per text."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        if self.trims:
            # Up to the last column any text's mask reaches: only trailing padding is cut (none if padded on the left).
            length = int(np.flatnonzero(mask.any(axis=0)).max(initial=0)) + 1
            ids, mask = ids[:, :length], mask[:, :length]
        states = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0].astype(np.float32)
        weights = mask[..., None].astype(np.float32)
        mean = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
