"""export.optimize.fold_zero_pads: explicit zero padding folded into Conv, nothing else touched."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

from diffusion.nets.layers import Conv2d
from export.optimize import fold_zero_pads, optimize_offline


class TwoConvs(torch.nn.Module):
    def __init__(self, mode: str):
        super().__init__()
        self.a = Conv2d(3, 8, 3, mode=mode)
        self.b = Conv2d(8, 4, 3, stride=2, mode=mode)

    def forward(self, x):
        return self.b(torch.nn.functional.silu(self.a(x)))


def _export(module: torch.nn.Module, path: Path) -> None:
    buffer = io.BytesIO()
    torch.onnx.export(module.eval(), (torch.randn(2, 3, 8, 8),), buffer, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}}, opset_version=18, dynamo=False)
    path.write_bytes(buffer.getvalue())


def _run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(source, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_zero_padding_folds_into_the_convolutions(tmp_path: Path) -> None:
    torch.manual_seed(0)
    _export(TwoConvs("zeros"), tmp_path / "m.onnx")
    assert "Pad" in _ops(onnx.load(tmp_path / "m.onnx"))
    optimized = optimize_offline(tmp_path / "m.onnx")
    assert "Pad" not in _ops(optimized)
    onnx.checker.check_model(optimized)
    for shape in ((1, 3, 8, 8), (3, 3, 12, 6)):   # still dynamic in batch and size
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(_run(optimized, x), _run(tmp_path / "m.onnx", x), rtol=0, atol=1e-5)


def test_circular_padding_is_left_alone(tmp_path: Path) -> None:
    torch.manual_seed(0)
    _export(TwoConvs("circular"), tmp_path / "m.onnx")
    optimized = optimize_offline(tmp_path / "m.onnx")
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(optimized, x), _run(tmp_path / "m.onnx", x), rtol=0, atol=1e-5)


def _pad_conv_graph(pad_value: float, shared: bool) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((2, 2, 3, 3), np.float32), "w")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    value = numpy_helper.from_array(np.array(pad_value, np.float32), "value")
    nodes = [helper.make_node("Pad", ["x", "pads", "value"], ["p"], mode="constant"),
             helper.make_node("Conv", ["p", "w"], ["y"], kernel_shape=[3, 3])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if shared:   # a second reader of the padded tensor: the Pad must stay
        nodes.append(helper.make_node("Identity", ["p"], ["p2"]))
        outputs.append(helper.make_tensor_value_info("p2", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                              outputs, [w, pads, value])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def test_only_plain_zero_pads_with_one_conv_reader_fold() -> None:
    x = np.random.default_rng(3).standard_normal((1, 2, 4, 4)).astype(np.float32)
    zero = _pad_conv_graph(0.0, shared=False)
    before = _run(zero, x)
    assert fold_zero_pads(zero) == 1 and _ops(zero) == ["Conv"]
    assert [i.name for i in zero.graph.initializer] == ["w"]
    np.testing.assert_allclose(_run(zero, x), before, rtol=0, atol=1e-6)
    for model in (_pad_conv_graph(1.0, shared=False), _pad_conv_graph(0.0, shared=True)):
        assert fold_zero_pads(model) == 0 and "Pad" in _ops(model)
