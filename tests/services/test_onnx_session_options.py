"""The worker's ONNX Runtime session options (services/worker/onnx_runtime.py)."""

from __future__ import annotations

from types import SimpleNamespace

from services.common.settings import Settings
from services.worker.onnx_runtime import OnnxModelRuntime


def test_sessions_flush_denormals_and_use_the_configured_threads() -> None:
    options = OnnxModelRuntime._options(SimpleNamespace(settings=Settings(onnx_intra_op_threads=3)))
    assert options.get_session_config_entry("session.set_denormal_as_zero") == "1"
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1


def test_idle_pool_threads_block_instead_of_spinning() -> None:
    options = OnnxModelRuntime._options(SimpleNamespace(settings=Settings()))
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
