"""The fp16 variant: matrix products in float16, everything numerically sensitive in float32.

Convolutions and matmuls carry nearly all the FLOPs and are what tensor cores speed up;
normalisations, softmax, exp/log/sin/cos (the noise embedding), and the EDM c_skip/c_out
arithmetic stay float32, where float16's 11-bit mantissa and 65504 range would hurt. Each
heavy op gets float16 weights (stored once) and a Cast of its activation in, and a Cast
back to float32 out; inputs and outputs of the model stay float32, so callers never change.

Written here rather than with onnxruntime.transformers.float16, whose converter names the
Casts it inserts non-uniquely on the graphs torch exports (a value read by two blocked
nodes) and produces invalid models.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HEAVY_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# ConvTranspose/Conv/Gemm: inputs 0-2 (x, W, bias); MatMul: both operands.
_FLOAT_INPUTS = {"Conv": 3, "ConvTranspose": 3, "MatMul": 2, "Gemm": 3}


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    converted: dict[str, str] = {}     # fp32 initializer -> its fp16 copy
    new_nodes: list[onnx.NodeProto] = []
    for index, node in enumerate(graph.node):
        if node.op_type not in HEAVY_OPS or node.domain not in ("", "ai.onnx"):
            new_nodes.append(node)
            continue
        for i, name in enumerate(node.input[:_FLOAT_INPUTS[node.op_type]]):
            if not name:
                continue
            init = inits.get(name)
            if init is not None:
                if init.data_type != TensorProto.FLOAT:
                    continue
                if name not in converted:
                    converted[name] = name + "__fp16"
                    array = numpy_helper.to_array(init).astype(np.float16)
                    graph.initializer.append(numpy_helper.from_array(array, converted[name]))
                node.input[i] = converted[name]
            else:
                cast_out = f"{name}__fp16_for_{index}"
                new_nodes.append(helper.make_node("Cast", [name], [cast_out], name=f"cast16_{index}_{i}",
                                                  to=TensorProto.FLOAT16))
                node.input[i] = cast_out
        outputs = list(node.output)
        for j, out in enumerate(outputs):
            node.output[j] = out + "__fp16"
        new_nodes.append(node)
        for j, out in enumerate(outputs):
            new_nodes.append(helper.make_node("Cast", [out + "__fp16"], [out], name=f"cast32_{index}_{j}",
                                              to=TensorProto.FLOAT))
    del graph.node[:]
    graph.node.extend(new_nodes)
    # fp32 originals still read by a light op (a bias Add, say) stay; unused ones go.
    used = {i for n in graph.node for i in n.input}
    for name in converted:
        if name not in used:
            graph.initializer.remove(inits[name])
    return model
