"""Workers and the gateway start without torch: their images hold onnxruntime, not PyTorch."""

import subprocess
import sys

SERVING_MODULES = (
    "services.worker.celery_app", "services.worker.onnx_runtime", "services.worker.pipeline",
    "services.gateway.server", "services.embedded", "clients.client", "clients.commands",
)


def test_serving_code_imports_neither_torch_nor_onnx():
    code = (
        "import importlib, sys\n"
        f"for m in {SERVING_MODULES!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in ('torch', 'onnx', 'diffusers', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_clients_import_no_service_or_model_code():
    code = (
        "import importlib, sys\n"
        "for m in ('clients.client', 'clients.aio', 'clients.requests', 'clients.errors'): importlib.import_module(m)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('services', 'diffusion')}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
