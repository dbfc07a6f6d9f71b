"""Units of the export stage: size-limited files, parity failures, TensorRT refusal, exporters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from atelier_cli.main import main as atelier
from export.component import FP16_WEIGHTS, FP32, Component
from export.onnx_files import check_onnx, save_onnx, store_weights_fp16
from export.parity import ParityError, check, cpu_session
from export.torch_export import export_component
from repository import providers
from repository.onnx_external import external_refs


def _embedding_component(rows: int = 3000, dim: int = 64) -> Component:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Embedding(rows, dim), torch.nn.Linear(dim, dim)).eval()

    def example(batch: int, g: torch.Generator):
        return (torch.randint(0, rows, (batch, 5), generator=g),)

    return Component("text_encoder", module, ("input_ids",), "last_hidden_state", example,
                     {"input_ids": {0: "batch"}})


def test_big_weights_split_below_the_file_limit(tmp_path: Path) -> None:
    component = _embedding_component()        # 3000 x 64 float32 = 768 kB embedding
    model = export_component(component)
    limit = 200_000
    files = save_onnx(model, tmp_path / "text_encoder.onnx", limit)
    assert len(files) >= 5 and all(f.stat().st_size <= limit for f in files)
    refs = external_refs(files[0].read_bytes())
    assert {r.location for r in refs} == {f.name for f in files[1:]}
    check_onnx(files[0])
    check(component, files[0], FP32)


def test_fp16_stored_weights_keep_fp32_compute(tmp_path: Path) -> None:
    component = _embedding_component()
    model = store_weights_fp16(export_component(component), min_elements=1000)
    files = save_onnx(model, tmp_path / "t.onnx", 20_000_000)
    assert files[0].stat().st_size < 3000 * 64 * 4 * 0.6
    entry = check(component, files[0], FP16_WEIGHTS)
    assert entry["min_cosine"] > 0.9999
    outputs = cpu_session(files[0]).get_outputs()
    assert outputs[0].type == "tensor(float)"


def test_parity_failure_names_file_and_numbers(tmp_path: Path) -> None:
    component = _embedding_component()
    save_onnx(export_component(component), tmp_path / "t.onnx", 20_000_000)
    with torch.no_grad():
        component.module[1].bias.add_(0.5)     # PyTorch now disagrees with the file
    with pytest.raises(ParityError, match=r"t\.onnx: ONNX Runtime differs from PyTorch at batch1: max abs error"):
        check(component, tmp_path / "t.onnx", FP32)


def test_dynamo_exporter_matches(tmp_path: Path) -> None:
    component = _embedding_component(rows=50, dim=8)
    model = export_component(component, exporter="dynamo")
    assert not list(tmp_path.iterdir())          # no stray .onnx.data anywhere
    save_onnx(model, tmp_path / "d.onnx", 20_000_000)
    assert check(component, tmp_path / "d.onnx", FP32)["passed"]


@pytest.mark.skipif(providers.TENSORRT in providers.detect().usable, reason="this machine has TensorRT")
def test_tensorrt_without_gpu_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code = atelier(["export", str(tmp_path), "--name", "m", "--version", "1", "--out", str(tmp_path / "models"),
                    "--tensorrt"])
    assert code == 1 and "needs an NVIDIA GPU" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()  # refused before any export work
    with pytest.raises(providers.ProviderUnavailable, match="TensorrtExecutionProvider was asked for"):
        providers.resolve("tensorrt,cpu")
    assert providers.resolve("auto")[-1] == providers.CPU


@pytest.mark.slow
def test_shipped_minilm_fits_the_repository(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 (91 MB fp32): fp16-stored weights in < 20 MB files, token states within
    cosine 0.9999 of PyTorch's fp32 encoder."""
    from export.text_encoders import BertTokens, load_hf_model, minilm_dir, text_component

    bert = load_hf_model(minilm_dir())
    component = text_component(BertTokens(bert), bert.config.vocab_size, 24, fp16_weights=True)
    model = store_weights_fp16(export_component(component))
    files = save_onnx(model, tmp_path / "text_encoder.onnx", 20_000_000)
    sizes = [f.stat().st_size for f in files]
    assert max(sizes) < 20_000_000 and 40e6 < sum(sizes) < 50e6
    entry = check(component, files[0], FP16_WEIGHTS)
    assert entry["min_cosine"] > 0.9999, entry
    assert onnx.load(str(files[0]), load_external_data=False).graph.input[0].name == "input_ids"
    assert np.isfinite(entry["max_abs"])
