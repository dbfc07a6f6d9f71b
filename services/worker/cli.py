"""`atelier worker`: run a Celery worker with the options the job path relies on.

A thread pool of `ATELIER_WORKER_CONCURRENCY` (threads share one loaded model and one
batching denoiser: processes could not), queues `interactive,batch` in that order with
the `priority` queue order strategy (interactive work is always taken first).
"""

from __future__ import annotations

import argparse
import os

# numpy's BLAS gets one thread before the worker loads numpy (services/common/blas.py says why).
from services.common.blas import one_blas_thread
from services.common.queues import QUEUES
from services.common.settings import Settings, env_name


def worker_argv(settings: Settings, queues: tuple[str, ...] = QUEUES, hostname: str | None = None) -> list[str]:
    argv = [
        "worker",
        "--pool", "threads",
        "--concurrency", str(settings.worker_concurrency),
        "--queues", ",".join(queues),
        "--loglevel", settings.log_level,
        # Workers need no gossip about each other: jobs coordinate through the job store.
        "--without-gossip", "--without-mingle",
    ]
    if hostname:
        argv += ["--hostname", hostname]
    return argv


def register(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument(
        "--concurrency", type=int, help=f"jobs sampled at once (default ${env_name('worker_concurrency')})"
    )
    parser.add_argument("--queues", default=",".join(QUEUES), help="queues to serve, first served first")
    parser.add_argument("--hostname", help="Celery node name (default celery@<host>)")
    parser.add_argument(
        "--metrics-port", type=int, help=f"Prometheus port (default ${env_name('worker_metrics_port')})"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # The Celery app reads its Settings from the environment when imported: apply overrides first.
    if args.concurrency is not None:
        os.environ[env_name("worker_concurrency")] = str(args.concurrency)
    if args.metrics_port is not None:
        os.environ[env_name("worker_metrics_port")] = str(args.metrics_port)
    one_blas_thread()
    from services.worker.celery_app import app

    settings = app.conf.atelier_settings
    queues = tuple(q for q in args.queues.split(",") if q)
    app.worker_main(worker_argv(settings, queues, args.hostname))
    return 0
