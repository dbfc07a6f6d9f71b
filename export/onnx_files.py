"""Save ONNX models as files that each stay below a size limit.

A model whose protobuf fits under the limit is one self-contained `.onnx`. A larger one
keeps its graph in `.onnx` and its weights in `<file>.data.0`, `.data.1`, ... (ONNX external
data), each below the limit; a single weight bigger than one file is split by rows into
initializers joined again by a `Concat` node, which ONNX Runtime constant-folds at load.
The limit exists for the repository (no committed file over 20 MB); it also keeps every
protobuf far below its 2 GB ceiling.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_ALIGN = 4096  # page-aligned offsets let ONNX Runtime memory-map the weights


def _producer_index(graph: onnx.GraphProto, name: str) -> int:
    """Position for a node that feeds `name`'s consumers: before the first of them."""
    for i, node in enumerate(graph.node):
        if name in node.input:
            return i
    return len(graph.node)


def store_weights_fp16(model: onnx.ModelProto, min_elements: int = 1 << 16) -> onnx.ModelProto:
    """Keep large float32 weights as float16 on disk, cast back to float32 in the graph.

    Computation stays float32 (ONNX Runtime folds the Cast at load), so the only error is
    each weight's rounding to float16 (relative 2^-11): half the bytes for a text encoder
    whose size is mostly its token embedding."""
    graph = model.graph
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT or math.prod(init.dims) < min_elements:
            continue
        array = numpy_helper.to_array(init)
        if np.abs(array).max(initial=0.0) > 65000:   # would overflow float16: keep as is
            continue
        stored = init.name + "__fp16"
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(array.astype(np.float16), stored))
        cast = helper.make_node("Cast", [stored], [init.name], name=init.name + "__to_fp32", to=TensorProto.FLOAT)
        graph.node.insert(_producer_index(graph, init.name), cast)
    return model


def split_large_initializers(model: onnx.ModelProto, max_bytes: int) -> onnx.ModelProto:
    """Split every initializer over `max_bytes` by rows into parts joined by Concat(axis=0)."""
    graph = model.graph
    for init in list(graph.initializer):
        array = numpy_helper.to_array(init)
        if array.nbytes <= max_bytes or array.ndim == 0:
            continue
        parts = math.ceil(array.nbytes / max_bytes)
        if parts > array.shape[0]:
            raise ValueError(f"initializer {init.name} {array.shape} cannot be split below {max_bytes} bytes by rows")
        graph.initializer.remove(init)
        names = []
        for k, chunk in enumerate(np.array_split(array, parts, axis=0)):
            names.append(f"{init.name}__part{k}")
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(chunk), names[-1]))
        concat = helper.make_node("Concat", names, [init.name], name=init.name + "__concat", axis=0)
        graph.node.insert(_producer_index(graph, init.name), concat)
    return model


def _all_tensors(model: onnx.ModelProto):
    yield from model.graph.initializer


def save_onnx(model: onnx.ModelProto, path: Path, max_file_bytes: int) -> list[Path]:
    """Write `model` to `path` (+ data files when needed); returns every file written."""
    path = Path(path)
    for old in path.parent.glob(path.name + ".data*"):
        old.unlink()
    onnx.external_data_helper.load_external_data_for_model(model, str(path.parent)) if _has_external(model) else None
    if model.ByteSize() < max_file_bytes:
        path.write_bytes(model.SerializeToString())
        return [path]
    # Headroom for the graph itself: the .onnx keeps the nodes and the small tensors.
    limit = max_file_bytes - _ALIGN
    split_large_initializers(model, limit)
    written: list[Path] = []
    handle, offset, index = None, 0, -1
    try:
        for tensor in _all_tensors(model):
            if not tensor.HasField("raw_data"):
                tensor.raw_data = numpy_helper.to_array(tensor).tobytes()
                del tensor.float_data[:], tensor.int64_data[:], tensor.int32_data[:], tensor.double_data[:]
            raw = tensor.raw_data
            if len(raw) < 1024:
                continue
            if handle is None or offset + len(raw) > limit:
                if handle is not None:
                    handle.close()
                index += 1
                data_path = path.with_name(f"{path.name}.data.{index}")
                handle, offset = open(data_path, "wb"), 0
                written.append(data_path)
            handle.write(raw)
            onnx.external_data_helper.set_external_data(tensor, data_path.name, offset, len(raw))
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            offset += len(raw)
            pad = (-offset) % _ALIGN
            handle.write(b"\0" * pad)
            offset += pad
    finally:
        if handle is not None:
            handle.close()
    path.write_bytes(model.SerializeToString())
    return [path, *written]


def _has_external(model: onnx.ModelProto) -> bool:
    return any(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)


def check_onnx(path: Path) -> None:
    """`onnx.checker` on the file (by path, so external data and >2 GB models are covered)."""
    model = onnx.load(str(path), load_external_data=False)
    standard = all(op.domain in ("", "ai.onnx") for op in model.opset_import)
    onnx.checker.check_model(str(path), full_check=standard)
