"""What a command in a `<!-- not run: WHY -->` block is checked for, by its program.

Each check returns the problems it found (empty: the command is as good as can be told without
running it). A program with no check here is a problem itself: add one rather than leave a
command unchecked.

- `atelier ...`: the command line parses with the real `atelier` parser (its subcommand's
  arguments, types and choices); a usage summary (`[--optional]`, `a|b`, `...`) instead names
  only subcommands and flags that exist, each `a|b` alternative tried.
- `python -m MODULE ...`: `MODULE --help` runs, and names every flag the command uses.
- `make TARGET`: `make -n TARGET` succeeds. A script (`x.sh`, `bash x.sh`): it exists and parses (`bash -n`).
- `docker`, `docker compose`, `kubectl`: the files and folders they are given exist; what is in
  them is checked by the deployment tests' validators (tests/deploy: hadolint, the compose
  schema, kubernetes-validate, promtool).
- `grpcurl`: the method exists in the contract and the `-d` JSON is its request message.
- `protoc`: the .proto files compile (to a descriptor set; the language plugins may be absent).
- `curl`: the URL's path is a route of the HTTP/JSON API for its method (POST with `-d`), and the
  `-d` JSON is that route's request message.
"""

from __future__ import annotations

import contextlib
import glob
import io
import itertools
import re
import subprocess
import sys
from pathlib import Path

from tests.docs.blocks import ROOT, is_synopsis, words

PYTHON = ROOT / ".venv" / "bin" / "python"
WRAPPERS = {"nice": 2, "taskset": 2, "timeout": 1, "sudo": 0}  # program -> how many arguments it takes first
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def check(command: str, *, mention: bool = False) -> list[str]:
    """`mention`: the command as prose names it (`atelier webhooks`, `atelier eval model`): only its
    subcommands and flags must exist."""
    argv = words(command)
    while argv and (ASSIGNMENT.match(argv[0]) or argv[0] in WRAPPERS):
        argv = argv[1:] if ASSIGNMENT.match(argv[0]) else argv[1 + WRAPPERS[argv[0]]:]
    if not argv:
        return [f"`{command}`: no command"]
    program = Path(argv[0]).name
    synopsis = mention or is_synopsis(command)
    if program == "atelier":
        return _atelier(argv[1:], synopsis, partial=mention)
    if program.startswith("python") and argv[1:2] == ["-m"]:
        return _python_module(argv[2], argv[3:])
    if program == "make":
        return _ran(["make", "-n", *argv[1:]], command)
    if program == "bash" or program.endswith(".sh"):
        return _script(argv[1] if program == "bash" else argv[0])
    if program == "docker":
        return _docker(argv[1:])
    if program == "kubectl":
        return _paths_after(argv[1:], ("-k", "-f"))
    if program == "grpcurl":
        return _grpcurl(argv[1:])
    if program == "protoc":
        return _protoc(argv[1:], command)
    if program == "curl":
        return _curl(argv[1:])
    if program == "chmod":
        return []  # a file mode: nothing to check before the file exists
    return [f"`{command}`: no check for `{program}` in tests/docs/checks.py"]


def _alternatives(argv: list[str]) -> list[list[str]]:
    """`train vae|unet` -> [train vae], [train unet]; flags and quoted text are left alone."""
    options = [w.split("|") if re.fullmatch(r"[\w.-]+(\|[\w.-]+)+", w) else [w] for w in argv]
    return [list(p) for p in itertools.product(*options)]


def _atelier(argv: list[str], synopsis: bool, partial: bool = False) -> list[str]:
    from atelier_cli.main import build_parser

    problems = []
    for variant in _alternatives(argv):
        shown = "atelier " + " ".join(variant)
        parser = build_parser(variant)
        deepest, rest = _subcommand(parser, variant, partial)
        if deepest is None:
            problems.append(f"`{shown}`: {rest}")
            continue
        if synopsis:
            known = {s for a in deepest._actions for s in a.option_strings}
            flags = {re.sub(r"[\[\]]|=.*", "", w) for w in variant if w.lstrip("[").startswith("--")}
            problems += [f"`{shown}`: no flag {f}" for f in sorted(flags - known)]
            continue
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                args = parser.parse_args(variant)
        except SystemExit:
            problems.append(f"`{shown}`: {err.getvalue().strip()}")
            continue
        if not getattr(args, "func", None):
            problems.append(f"`{shown}`: names no command")
    return problems


def _subcommand(parser, argv: list[str], partial: bool = False):
    """The parser of the deepest subcommand argv names, or (None, why); `partial`: argv may stop
    at a group of subcommands (or give a flag there)."""
    import argparse

    for word in argv + [None]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or partial and (word is None or word.startswith("-")):
            return parser, None
        if word not in subs[0].choices:
            return None, f"{word!r} is not one of {sorted(subs[0].choices)}"
        parser = subs[0].choices[word]
    return parser, None


def _python_module(module: str, argv: list[str]) -> list[str]:
    done = subprocess.run([str(PYTHON), "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0:
        return [f"`python -m {module} --help` failed: {done.stderr.strip()[-500:]}"]
    flags = {w.split("=")[0].strip("[]") for w in argv if w.lstrip("[").startswith("--")}
    return [f"`python -m {module}`: no flag {f}" for f in sorted(flags)
            if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", done.stdout)]


def _ran(argv: list[str], command: str) -> list[str]:
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return [] if done.returncode == 0 else [f"`{command}`: `{' '.join(argv)}` failed: {done.stderr.strip()[-500:]}"]


def _script(path: str) -> list[str]:
    script = ROOT / path
    if not script.is_file():
        return [f"no script {path}"]
    return _ran(["bash", "-n", str(script)], path)


def _docker(argv: list[str]) -> list[str]:
    if argv[:1] == ["compose"]:
        return [] if (ROOT / "docker-compose.yml").is_file() else ["no docker-compose.yml"]
    return _paths_after(argv, ("-f", "--file"))


def _paths_after(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    named = [argv[i + 1] for i, w in enumerate(argv[:-1]) if w in flags]
    return [f"no such file or folder: {p}" for p in named if not (ROOT / p).exists()]


def _grpcurl(argv: list[str]) -> list[str]:
    from google.protobuf import descriptor_pool, json_format, message_factory
    from grpc_health.v1 import health_pb2  # noqa: F401

    import atelier.v1.generation_pb2  # noqa: F401 - registers the contract's descriptors
    import atelier.v1.models_pb2  # noqa: F401

    method = next((w for w in argv if "/" in w and not w.startswith("-")), None)
    if method is None:
        return [] if "list" in argv or "describe" in argv else [f"`grpcurl {' '.join(argv)}`: no method"]
    service, _, name = method.partition("/")
    try:
        found = descriptor_pool.Default().FindServiceByName(service).FindMethodByName(name)
    except KeyError:
        found = None
    if found is None:
        return [f"grpcurl: no method {method} in the contract"]
    if "-d" in argv:
        try:
            json_format.Parse(argv[argv.index("-d") + 1], message_factory.GetMessageClass(found.input_type)())
        except json_format.ParseError as bad:
            return [f"grpcurl {method}: the -d JSON is not a {found.input_type.name}: {bad}"]
    return []


def _protoc(argv: list[str], command: str) -> list[str]:
    kept = [w for w in argv if not re.match(r"--([\w-]+_out|plugin)(=|$)", w)]
    files = [f for w in kept for f in (sorted(glob.glob(w, root_dir=ROOT)) if "*" in w else [w])]
    if not any(f.endswith(".proto") and (ROOT / f).is_file() for f in files):
        return [f"`{command}`: no .proto files"]
    return _ran(["protoc", *files, "--descriptor_set_out=/dev/null"], command)



def _curl(argv: list[str]) -> list[str]:
    from urllib.parse import urlsplit

    from google.protobuf import json_format

    from services.gateway.web.routes import ARTIFACT_PATH, ROUTES

    url = next((w for w in argv if w.startswith(("http://", "https://"))), None)
    if url is None:
        return [f"`curl {' '.join(argv)}`: no URL"]
    data = argv[argv.index("-d") + 1] if "-d" in argv else None
    verb = argv[argv.index("-X") + 1] if "-X" in argv else ("POST" if data is not None else "GET")
    path = urlsplit(url).path
    templates = [(r.verb, r.path, r) for r in ROUTES] + [("GET", ARTIFACT_PATH, None)]
    matching = [route for route_verb, template, route in templates if route_verb == verb
                and re.match("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$", path)]
    if not matching:
        return [f"curl: {verb} {path} is no route of the HTTP/JSON API (services/gateway/web/routes.py)"]
    route = matching[0]
    if data is not None and route is not None:
        try:
            json_format.Parse(data, route.new_request())
        except json_format.ParseError as bad:
            return [f"curl {verb} {path}: the -d JSON is not a {route.request_type.name}: {bad}"]
    return []

if __name__ == "__main__":  # python -m tests.docs.checks 'atelier train vae --data x.npz'
    print("\n".join(check(" ".join(sys.argv[1:]))) or "ok")
