"""`atelier gateway`: run the gRPC gateway, and manage its API keys.

    atelier gateway                                   # serve, configured by ATELIER_* variables
    atelier gateway add-key --tenant studio-a         # print a new key once; store only its hash
    atelier gateway revoke-key KEY_ID

Both key commands use, without `--keys-file`, the file the gateway reads (`ATELIER_API_KEYS_FILE`)
or else the one docker-compose mounts into it (`${ATELIER_KEYS_DIR:-deploy/compose/keys}/api_keys.json`,
docs/DEPLOY.md), so a key is revoked from the same file it was added to.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from services.common.blas import one_blas_thread
from services.common.settings import Settings, SettingsError, env_name

# docker-compose.yml mounts this folder (ATELIER_KEYS_DIR overrides it) as the gateway's keys folder.
COMPOSE_KEYS_DIR = Path("deploy/compose/keys")
KEYS_FILE_HELP = (f"keys file (default: {env_name('api_keys_file')}, else "
                  f"${{ATELIER_KEYS_DIR:-{COMPOSE_KEYS_DIR}}}/api_keys.json, the file docker compose mounts)")


def register(parser: argparse.ArgumentParser, name: str = "gateway") -> None:
    parser.add_argument("--listen", help=f"address to listen on (default: {env_name('grpc_listen')})")
    parser.set_defaults(func=_serve)
    sub = parser.add_subparsers(dest="gateway_command", metavar="ACTION")
    serve = sub.add_parser("serve", help="run the gateway (the default)")
    serve.add_argument("--listen", help=argparse.SUPPRESS)
    serve.set_defaults(func=_serve)
    add = sub.add_parser("add-key", help="create an API key for a tenant and print it once")
    add.add_argument("--tenant", required=True, help="tenant the key acts for")
    add.add_argument("--keys-file", type=Path, help=KEYS_FILE_HELP)
    add.set_defaults(func=_add_key)
    revoke = sub.add_parser("revoke-key", help="delete an API key by its id")
    revoke.add_argument("key_id")
    revoke.add_argument("--keys-file", type=Path, help=KEYS_FILE_HELP)
    revoke.set_defaults(func=_revoke_key)


def _keys_file(args) -> Path:
    if args.keys_file is not None:
        return args.keys_file
    try:
        configured = Settings.from_env().api_keys_file
    except SettingsError as exc:
        raise SystemExit(f"atelier gateway: {exc}") from None
    if configured is not None:
        return Path(configured)
    return Path(os.environ.get("ATELIER_KEYS_DIR") or COMPOSE_KEYS_DIR) / "api_keys.json"


def _add_key(args) -> int:
    from services.gateway.auth import add_key

    path = _keys_file(args)
    kid, key = add_key(path, args.tenant)
    print(key)
    print(f"key id {kid} for tenant {args.tenant!r} stored (hashed) in {path}; the key is not shown again",
          file=sys.stderr)
    return 0


def _revoke_key(args) -> int:
    from services.gateway.auth import revoke_key

    path = _keys_file(args)
    if not revoke_key(path, args.key_id):
        print(f"no key {args.key_id!r} in {path}", file=sys.stderr)
        return 1
    print(f"revoked key {args.key_id}", file=sys.stderr)
    return 0


def _serve(args) -> int:
    # Before the server loads numpy: the prompt check's products on one BLAS thread (services/common/blas.py).
    one_blas_thread()
    from services.gateway.server import serve

    try:
        overrides = {"grpc_listen": args.listen} if getattr(args, "listen", None) else {}
        settings = Settings.from_env(**overrides)
    except SettingsError as exc:
        print(f"atelier gateway: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gateway = serve(settings)
    done = threading.Event()

    def on_signal(signum, _frame):
        logging.getLogger(__name__).info("signal %d: stopping (grace %.0f s)", signum, settings.shutdown_grace_seconds)
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    done.wait()
    gateway.stop()
    # gRPC's pool threads are joined at interpreter exit; one whose call was cancelled but which
    # still waits on Redis would keep a stopped gateway's process alive. It has stopped: exit.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
