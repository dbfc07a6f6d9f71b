"""ONNX Runtime offline graph optimisation: fusions done once at export, not at every load.

Level EXTENDED (constant folding, redundant-node removal, Conv+Add/Mul fusions, attention and
GELU/LayerNorm fusions) and not ALL: ALL also rewrites layouts for the exporting machine's CPU
(NCHWc), which would tie the file to that instruction set. The fused contrib ops that EXTENDED
introduces run on the CPU and CUDA providers; the result is the `optimized` variant, which CPU
workers prefer (see services/worker/onnx_runtime.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort


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
        return onnx.load(str(target), load_external_data=True)
