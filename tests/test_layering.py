"""The layers of docs/ARCHITECTURE.md ("Contracts: layers"), checked on what really gets
imported: each group of modules is imported in a fresh interpreter and sys.modules is read."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVING_MODULES = (
    "services.worker.celery_app", "services.worker.onnx_runtime", "services.worker.pipeline",
    "services.gateway.server", "atelier_cli.up", "clients.client", "atelier_cli.commands",
)


def _modules_of(package: str) -> tuple[str, ...]:
    return tuple(sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in (ROOT / package).rglob("*.py") if p.name != "__main__.py"
    ))


def imported_after(modules: tuple[str, ...], watched: tuple[str, ...]) -> list[str]:
    """Which of the `watched` top-level packages (or dotted prefixes) are loaded once `modules` are imported."""
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(w for w in {watched!r} if any(m == w or m.startswith(w + '.') for m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         cwd=ROOT)
    return eval(out.stdout.strip())  # noqa: S307 - a list of names this test printed


def test_serving_code_imports_neither_torch_nor_onnx():
    assert imported_after(SERVING_MODULES, ("torch", "onnx", "diffusers", "transformers")) == []


def test_the_sdk_imports_no_service_model_export_training_or_celery_code():
    """clients/ is the SDK a game tool installs: the stubs and grpc, nothing of the service."""
    modules = _modules_of("clients")
    assert "clients.client" in modules and "clients.aio" in modules
    assert imported_after(modules, ("services", "diffusion", "export", "repository", "atelier_cli", "celery",
                                    "torch", "onnxruntime", "redis")) == []


def test_export_imports_no_service_code():
    """export/ converts checkpoints into the model repository; serving code is not its business."""
    assert imported_after(_modules_of("export"), ("services", "clients", "atelier_cli")) == []


def test_the_model_repository_imports_no_service_export_torch_or_client_code():
    """repository/ sits under both export/ and services/: it may use numpy-free diffusion
    constants and onnxruntime (provider detection), nothing above it and no torch."""
    watched = ("services", "export", "clients", "atelier_cli", "torch", "diffusion.nets", "diffusion.training",
               "diffusion.evaluation")
    assert imported_after(_modules_of("repository"), watched) == []
