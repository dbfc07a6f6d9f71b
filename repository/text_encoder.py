"""A model version's own text encoder outside the worker: pooled token states on the CPU.

The gateway's prompt check (services.common.policy.semantic) compares a prompt with the
content policy's concepts in the space of the text encoder that conditions the model. This
opens the version's tokenizer and `text_encoder` ONNX file through the verifying reader (hash
checked, external data only from the version's folder) and mean-pools the token states over the
attention mask, L2-normalised: for a sentence-transformer (the shipped MiniLM) that is its
sentence embedding.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from repository.reader import ModelVersion


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
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.max_tokens = m.text_encoder.max_tokens

    def pooled(self, texts: list[str]) -> np.ndarray:
        """[N, hidden] unit vectors, one per text."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        enc = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        states = self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0].astype(np.float32)
        weights = mask[..., None].astype(np.float32)
        mean = (states * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
