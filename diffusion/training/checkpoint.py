"""Checkpoints as safetensors (tensors) + JSON (everything else); never pickle
(docs/ARCHITECTURE.md, Contracts: model repository).

One file holds the model (``model.*``), its EMA (``ema.*``) and the AdamW moments
(``opt.<param index>.<name>``); the JSON beside it holds the step, configs and the
optimizer's param groups. Both are written to a temporary name and renamed, so a kill
mid-write leaves the previous checkpoint intact."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (weights files are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{idx}.{name}"] = t.detach().clone().contiguous()
    return tensors, sd["param_groups"]


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: list[dict]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_checkpoint(path: str | Path, groups: dict[str, dict[str, torch.Tensor]], meta: dict[str, Any]) -> None:
    """``groups``: prefix -> tensors (e.g. {"model": sd, "ema": sd, "opt": ...}); ``meta``: JSON.
    Writes ``path`` (.safetensors) and ``path`` with suffix .json."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {f"{g}.{k}": v.detach().contiguous().cpu() for g, sd in groups.items() for k, v in sd.items()}
    _atomic(path, lambda p: save_file(flat, str(p)))
    _atomic(path.with_suffix(".json"), lambda p: p.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8"))


def load_checkpoint(path: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    path = Path(path)
    flat = load_file(str(path))
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        g, k = key.split(".", 1)
        groups.setdefault(g, {})[k] = value
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    return groups, meta


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor]) -> None:
    """Plain weights (the shipped EMA): fp32, contiguous, safetensors."""
    _atomic(Path(path), lambda p: save_file({k: v.detach().float().contiguous().cpu()
                                               for k, v in state_dict.items()}, str(p)))
