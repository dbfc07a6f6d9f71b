"""The `atelier` command line: one program, one subcommand per area.

Each subcommand lives in the module of the area it drives and is imported only when
used, so a client-only install (no torch, no onnxruntime) still runs `atelier generate`.
A module listed here exposes `register(parser)` to add its arguments and sets
`func` on the parsed namespace.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from atelier_cli.arguments import Parser

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data": ("diffusion.data.cli", "build training datasets (emoji sets, a studio's image folder)"),
    "train": ("diffusion.training.cli", "train the VAE, the UNet, or fine-tune the shipped model"),
    "eval": ("diffusion.evaluation.cli", "evaluate a model: FID/KID, precision/recall, prompt adherence"),
    "export": ("atelier_cli.export", "export a checkpoint to an ONNX model repository"),
    "worker": ("services.worker.cli", "run a Celery GPU worker"),
    "gateway": ("services.gateway.cli", "run the gRPC gateway"),
    "webhooks": ("services.webhooks.cli", "run the webhook dispatcher; manage endpoints, secrets, dead letters"),
    "up": ("atelier_cli.up", "run the whole stack on this machine"),
    "generate": ("atelier_cli.commands", "generate images through a gateway"),
    "upscale": ("atelier_cli.commands", "upscale an image x4 through a gateway"),
    "jobs": ("atelier_cli.commands", "list, get, watch or cancel jobs"),
    "dataset": ("atelier_cli.dataset", "make a dataset of generated images (WebDataset shards), or inspect one"),
    "models": ("atelier_cli.commands", "list the models a gateway serves"),
    "lookup": ("atelier_cli.provenance", "was this image made here? (the tenant's delivered images that match it)"),
    "verify": ("atelier_cli.provenance", "check an image's content credentials (C2PA) and who signed them"),
}


# The pyproject extra each server-side subcommand needs; a bare `pip install atelier` has the client ones.
EXTRAS: dict[str, str] = {"data": "train", "train": "train", "eval": "train", "export": "train",
                          "worker": "worker", "gateway": "worker", "up": "server",
                          "webhooks": "server", "verify": "server"}
PROJECT_PACKAGES = {"atelier", "atelier_cli", "clients", "diffusion", "export", "repository", "services", "bench"}


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = Parser(prog="atelier", description="Atelier diffusion image generation")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv else None
    for name, (module, help_text) in SUBCOMMANDS.items():
        try:
            present = _available(module)
        except ModuleNotFoundError:
            present = False
        if not present:
            continue
        sp = sub.add_parser(name, help=help_text, description=help_text)
        # Import the module only for the subcommand being run: keeps `atelier --help` fast
        # and lets each area keep its heavy imports (torch, onnxruntime) to itself.
        if name == wanted:
            try:
                area = importlib.import_module(module)
            except ModuleNotFoundError as missing:
                if (missing.name or "").partition(".")[0] in PROJECT_PACKAGES:
                    raise  # the project's own module: a bug, not an install without an extra
                extra = EXTRAS.get(name, "server")
                parser.exit(2, f"atelier {name}: needs the `{extra}` extra (missing module {missing.name!r}): "
                               f"pip install 'atelier[{extra}]'\n")
            area.register(sp, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(argv)
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, a bad argument or a missing extra, already said in one line
        return done.code if isinstance(done.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
