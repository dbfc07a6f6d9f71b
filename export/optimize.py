"""ONNX Runtime offline graph optimisation: fusions done once at export, not at every load.

Level EXTENDED (constant folding, redundant-node removal, Conv+Add/Mul fusions, attention and
GELU/LayerNorm fusions) and not ALL: ALL also rewrites layouts for the exporting machine's CPU
(NCHWc), which would tie the file to that instruction set. The fused contrib ops that EXTENDED
introduces run on the CPU and CUDA providers; the result is the `optimized` variant, which CPU
workers prefer (see services/worker/onnx_runtime.py).

After ORT's pass, zero padding is folded into the convolutions (`fold_zero_pads`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper


def optimize_offline(source: Path) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(target)
        options.log_severity_level = 3
        # Weights go to one external file so models past protobuf's 2 GB still save;
        # save_onnx re-splits them below the repository's file-size limit.
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                         "optimized.onnx.data")
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        model = onnx.load(str(target), load_external_data=True)
    fold_zero_pads(model)
    return model


def _attr(node: onnx.NodeProto, name: str, default=None):
    found = next((a for a in node.attribute if a.name == name), None)
    return default if found is None else helper.get_attribute_value(found)


def fold_zero_pads(model: onnx.ModelProto) -> int:
    """Pad(constant 0, spatial only) -> Conv becomes one Conv with `pads`; returns how many.

    Atelier's networks pad explicitly (diffusion/nets/layers.pad2d, so that a tiling twin can
    switch to circular padding), which exports as a separate Pad before every 3x3 Conv. ORT's
    own PadFusion leaves these in place (ORT 1.31), and on the CPU each one copies the whole
    activation: 10-13 % of the default UNet's time at batch 1 to 16 (docs/BENCHMARKS.md,
    Engines). Circular padding exports as Concat/Slice and is left alone."""
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded = []
    for pad in graph.node:
        if pad.op_type != "Pad" or pad.domain not in ("", "ai.onnx") or pad.output[0] in outputs:
            continue
        inputs = list(pad.input) + [""] * (4 - len(pad.input))
        mode = _attr(pad, "mode", b"constant")
        if mode not in (b"constant", "constant") or inputs[1] not in initializers or inputs[3]:
            continue
        if inputs[2] and (inputs[2] not in initializers or np.any(numpy_helper.to_array(initializers[inputs[2]]))):
            continue
        pads = numpy_helper.to_array(initializers[inputs[1]]).astype(np.int64)
        users = consumers.get(pad.output[0], [])
        if pads.shape != (8,) or (pads < 0).any() or pads[[0, 1, 4, 5]].any() or len(users) != 1:
            continue
        conv = users[0]
        if conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx") or conv.input[0] != pad.output[0]:
            continue
        if _attr(conv, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"", ""):
            continue
        old = list(_attr(conv, "pads", [0, 0, 0, 0]))
        if len(old) != 4:
            continue
        # ONNX pads: [x1_begin, x2_begin, x1_end, x2_end]; Pad's: [N, C, H, W begins, N, C, H, W ends].
        new = [old[0] + int(pads[2]), old[1] + int(pads[3]), old[2] + int(pads[6]), old[3] + int(pads[7])]
        for a in [a for a in conv.attribute if a.name == "pads"]:
            conv.attribute.remove(a)
        conv.attribute.append(helper.make_attribute("pads", new))
        conv.input[0] = pad.input[0]
        folded.append(pad)
    for pad in folded:
        graph.node.remove(pad)
    # The folded pads' own constants go too, when nothing else reads them.
    still_used = {name for node in graph.node for name in node.input} | outputs
    dropped = {name for pad in folded for name in pad.input[1:3] if name and name not in still_used}
    for init in [i for i in graph.initializer if i.name in dropped]:
        graph.initializer.remove(init)
    return len(folded)
