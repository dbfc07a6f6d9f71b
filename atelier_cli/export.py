"""`atelier export ... [--tensorrt]`: the export stage's command, and with `--tensorrt` the
worker's engine build right after it (services/worker/engines.py), so export/ stays a pure
converter that needs no worker code."""

from __future__ import annotations

import argparse
import sys

from export import cli as export_cli


def register(parser: argparse.ArgumentParser, name: str = "export") -> None:
    export_cli.register(parser, name)
    parser.add_argument("--tensorrt", action="store_true",
                        help="then build TensorRT engines into the worker's engine cache (NVIDIA GPU only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.tensorrt:
        return export_cli.run(args)
    from services.worker.engines import TensorRTUnavailable, build_engines, require_tensorrt

    try:
        require_tensorrt()  # before minutes of export: TensorRT needs an NVIDIA GPU and libnvinfer
        code = export_cli.run(args)
        if code == 0:
            build_engines(args.out, args.name, str(args.version), lambda message: print(message, file=sys.stderr))
    except TensorRTUnavailable as exc:
        print(f"atelier export: {exc}", file=sys.stderr)
        return 1
    return code
