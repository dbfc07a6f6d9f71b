"""Generate the Python stubs (and their mypy stubs) of the gRPC contract.

    python proto/generate.py [OUT_DIR]

writes `atelier/v1/*_pb2.py`, `*_pb2_grpc.py` and `.pyi` files under OUT_DIR (default:
the repository root). The generated files are committed so that a client install needs
no protoc; `tests/test_proto.py` regenerates them and fails when they are stale.
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
PACKAGE = Path("atelier/v1")


def generate(out_dir: Path = REPO_ROOT) -> list[Path]:
    from grpc_tools import protoc

    out_dir = Path(out_dir)
    target = out_dir / PACKAGE
    target.mkdir(parents=True, exist_ok=True)
    protos = sorted((PROTO_ROOT / PACKAGE).glob("*.proto"))
    well_known = resources.files("grpc_tools") / "_proto"
    plugin_dir = Path(sys.executable).parent  # protoc-gen-mypy lives beside python
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={plugin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={plugin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed on {', '.join(p.name for p in protos)}")
    for init in (out_dir / "atelier" / "__init__.py", target / "__init__.py"):
        if not init.exists():
            init.write_text('"""Generated from proto/atelier/v1 by proto/generate.py; do not edit."""\n')
    return sorted(p for p in target.iterdir() if p.is_file())


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT
    if out != REPO_ROOT and (out / PACKAGE).exists():
        shutil.rmtree(out / PACKAGE)
    for path in generate(out):
        print(path)
