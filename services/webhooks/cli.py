"""`atelier webhooks`: run the dispatcher, manage each tenant's endpoints and secrets, read the
dead letters.

    atelier webhooks run                                           # the dispatcher (ATELIER_* settings)
    atelier webhooks add --tenant studio-a --url https://hooks.example/atelier --events started,finished
    atelier webhooks allow-job-urls --tenant studio-a https://hooks.example/
    atelier webhooks rotate-secret --tenant studio-a               # a second secret; both sign
    atelier webhooks retire-secrets --tenant studio-a              # only the newest signs
    atelier webhooks list | remove ENDPOINT_ID
    atelier webhooks dead-letters [--limit N] | redeliver DELIVERY_ID

The file is `ATELIER_WEBHOOKS_FILE`, else `webhooks.json` beside `ATELIER_API_KEYS_FILE`, else
the one docker compose mounts (`${ATELIER_KEYS_DIR:-deploy/compose/keys}/webhooks.json`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from services.common.settings import Settings, SettingsError
from services.common.webhooks import config
from services.gateway.cli import COMPOSE_KEYS_DIR

FILE_HELP = "webhooks file (default: ATELIER_WEBHOOKS_FILE, else webhooks.json beside the API keys file)"


def register(parser: argparse.ArgumentParser, name: str = "webhooks") -> None:
    parser.set_defaults(func=_run)
    sub = parser.add_subparsers(dest="webhooks_command", metavar="ACTION")
    sub.add_parser("run", help="run the webhook dispatcher (the default)").set_defaults(func=_run)

    add = sub.add_parser("add", help="add an endpoint for a tenant (prints the tenant's first secret once)")
    add.add_argument("--tenant", required=True)
    add.add_argument("--url", required=True, help="http(s) URL the events are POSTed to")
    add.add_argument("--events", default=",".join(config.DEFAULT_EVENTS),
                     help=f"comma-separated, of {', '.join(config.EVENTS)} (default: %(default)s)")
    add.add_argument("--progress-every", type=int, default=config.DEFAULT_PROGRESS_INTERVAL_SECONDS,
                     help="least seconds between two progress events (default: %(default)s)")
    add.set_defaults(func=_add)
    remove = sub.add_parser("remove", help="remove an endpoint by its id")
    remove.add_argument("endpoint_id")
    remove.set_defaults(func=_remove)
    sub.add_parser("list", help="every tenant's endpoints (no secrets)").set_defaults(func=_list)
    rotate = sub.add_parser("rotate-secret", help="add a new signing secret and print it; the old ones still sign")
    rotate.add_argument("--tenant", required=True)
    rotate.set_defaults(func=_rotate)
    retire = sub.add_parser("retire-secrets", help="keep only the newest signing secret")
    retire.add_argument("--tenant", required=True)
    retire.set_defaults(func=_retire)
    allow = sub.add_parser("allow-job-urls", help="let the tenant's jobs name their own endpoint under a URL prefix")
    allow.add_argument("--tenant", required=True)
    allow.add_argument("prefix")
    allow.set_defaults(func=_allow)
    dead = sub.add_parser("dead-letters", help="deliveries given up on, newest first (JSON lines)")
    dead.add_argument("--limit", type=int, default=20)
    dead.set_defaults(func=_dead)
    again = sub.add_parser("redeliver", help="send a dead letter again, its attempts starting over")
    again.add_argument("delivery_id")
    again.set_defaults(func=_redeliver)
    for p in (add, remove, sub.choices["list"], rotate, retire, allow):
        p.add_argument("--file", type=Path, help=FILE_HELP)


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise SystemExit(f"atelier webhooks: {exc}") from None


def _file(args) -> Path:
    if args.file is not None:
        return args.file
    s = _settings()
    return (config.file_of(s.webhooks_file, s.api_keys_file)
            or Path(os.environ.get("ATELIER_KEYS_DIR") or COMPOSE_KEYS_DIR) / "webhooks.json")


def _edit(action):
    try:
        return action()
    except config.WebhookConfigError as exc:
        raise SystemExit(f"atelier webhooks: {exc}") from None


def _add(args) -> int:
    events = tuple(e.strip() for e in args.events.split(",") if e.strip())
    path = _file(args)
    endpoint, secret = _edit(lambda: config.add_endpoint(path, args.tenant, args.url, events, args.progress_every))
    print(endpoint.id)
    if secret:
        print(f"signing secret of tenant {args.tenant!r} (shown once): {secret}", file=sys.stderr)
    print(f"endpoint {endpoint.id} for tenant {args.tenant!r} stored in {path}", file=sys.stderr)
    return 0


def _remove(args) -> int:
    if not config.remove_endpoint(_file(args), args.endpoint_id):
        print(f"no endpoint {args.endpoint_id!r}", file=sys.stderr)
        return 1
    return 0


def _list(args) -> int:
    for tenant, t in sorted(config.read(_file(args)).tenants.items()):
        for e in t.endpoints:
            print(f"{tenant}\t{e.id}\t{e.url}\t{','.join(e.events)}\tprogress every {e.progress_interval_seconds} s")
        for prefix in t.job_url_prefixes:
            print(f"{tenant}\tjob urls\t{prefix}")
        print(f"{tenant}\tsecrets\t{len(t.secrets)}")
    return 0


def _rotate(args) -> int:
    path = _file(args)
    print(_edit(lambda: config.rotate_secret(path, args.tenant)))
    print("every listed secret signs until `atelier webhooks retire-secrets`", file=sys.stderr)
    return 0


def _retire(args) -> int:
    path = _file(args)
    n = _edit(lambda: config.retire_secrets(path, args.tenant))
    print(f"retired {n} secret(s) of tenant {args.tenant!r}", file=sys.stderr)
    return 0


def _allow(args) -> int:
    path = _file(args)
    secret = _edit(lambda: config.allow_job_urls(path, args.tenant, args.prefix))
    if secret:
        print(f"signing secret of tenant {args.tenant!r} (shown once): {secret}", file=sys.stderr)
    return 0


def _store():
    import redis

    from services.common.webhooks.deliveries import WebhookStore

    s = _settings()
    return WebhookStore(redis.Redis.from_url(s.redis_url), s.key_prefix)


def _dead(args) -> int:
    for letter in _store().dead_letters(args.limit):
        print(json.dumps(letter, sort_keys=True))
    return 0


def _redeliver(args) -> int:
    if not _store().redeliver(args.delivery_id, time.time()):
        print(f"no dead letter {args.delivery_id!r}", file=sys.stderr)
        return 1
    return 0


def _run(args) -> int:
    from services.common.metrics import serve
    from services.webhooks.dispatcher import Dispatcher

    settings = _settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger(__name__)
    try:
        serve(settings.webhooks_metrics_port)
    except OSError as err:  # sending matters more than being scraped: say so and go on
        log.error("no metrics on :%d (%s)", settings.webhooks_metrics_port, err)
    dispatcher = Dispatcher(settings).start()
    log.info("webhook dispatcher running (webhooks file %s, metrics port %d)", dispatcher.webhooks.path,
             settings.webhooks_metrics_port)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    dispatcher.stop()
    return 0

