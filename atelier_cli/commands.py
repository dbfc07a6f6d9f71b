"""`atelier generate`, `atelier upscale`, `atelier jobs get|watch|cancel`, `atelier models`: the gateway from a shell.

Every gRPC error ends in one clear message on stderr and an exit status:
2 invalid request, 3 authentication, 4 no such job, 5 overloaded (retry later),
6 gateway unreachable, 1 anything else (including a job that did not succeed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from atelier_cli.arguments import consecutive_seeds, existing_file, number, seed, size, whole
from atelier_cli.config import default_api_key, default_gateway
from atelier_cli.history import print_jobs, register_list
from diffusion.sampler_catalog import SAMPLER_NAMES

EXIT = {"INVALID_ARGUMENT": 2, "UNAUTHENTICATED": 3, "PERMISSION_DENIED": 3, "NOT_FOUND": 4,
        "RESOURCE_EXHAUSTED": 5, "UNAVAILABLE": 6}


def _connection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--gateway", default=None, help="gateway address host:port (env ATELIER_GATEWAY)")
    g.add_argument("--api-key", default=None, help="API key (env ATELIER_API_KEY, or the key file of `atelier up`)")
    g.add_argument("--tls", action="store_true", help="connect with TLS")
    g.add_argument("--ca-cert", type=existing_file, help="PEM CA to verify the gateway (implies --tls)")
    g.add_argument("--client-cert", type=existing_file, help="PEM client certificate for mutual TLS")
    g.add_argument("--client-key", type=existing_file, help="PEM client key for mutual TLS")
    g.add_argument("--timeout", type=number(0, above=True), default=30.0, help="seconds for unary calls (default 30)")


def register(parser: argparse.ArgumentParser, name: str) -> None:
    if name == "generate":
        _register_generate(parser)
    elif name == "upscale":
        _register_upscale(parser)
    elif name == "jobs":
        sub = parser.add_subparsers(dest="jobs_command", metavar="ACTION", required=True)
        get = sub.add_parser("get", help="show a job's state")
        get.add_argument("job_id")
        watch = sub.add_parser("watch", help="follow a job's events, writing its images")
        watch.add_argument("job_id")
        watch.add_argument("--after", default="", help="resume after this event id")
        watch.add_argument("--out", type=Path, default=Path("out"), help="folder for images (default out/)")
        watch.add_argument("--no-progress", action="store_true", help="no progress bar")
        cancel = sub.add_parser("cancel", help="cancel a job")
        cancel.add_argument("job_id")
        listing = sub.add_parser("list", help="this tenant's jobs, newest first")
        register_list(listing)
        for p in (get, watch, cancel, listing):
            _connection_args(p)
        parser.set_defaults(func=_jobs)
    elif name == "models":
        _connection_args(parser)
        parser.set_defaults(func=_models)
    else:
        raise ValueError(f"atelier_cli.commands has no subcommand {name!r}")


def _register_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", help="what to draw")
    p.add_argument("--style", default="", help="art style (see `atelier models`)")
    p.add_argument("--negative", default="", help="what to steer away from")
    p.add_argument("--seed", type=seed, action="append", default=[], help="seed of one image (repeatable)")
    p.add_argument("--count", type=whole(1), default=0,
                   help="number of images: seeds drawn by the service, or with one --seed S: S, S+1, ... S+N-1")
    p.add_argument("--steps", type=whole(1), default=0, help="sampler steps (default: the model's)")
    p.add_argument("--sampler", default="", choices=SAMPLER_NAMES, metavar="SAMPLER",
                   help=f"one of {', '.join(SAMPLER_NAMES)} (default: the model's)")
    p.add_argument("--guidance", type=number(0), default=None, help="classifier-free guidance scale")
    p.add_argument("--size", type=size, default=None, help="WIDTHxHEIGHT in pixels (default: native)")
    p.add_argument("--init", type=existing_file, default=None, help="init image for image-to-image")
    p.add_argument("--strength", type=number(0, 1, above=True), default=0.0,
                   help="image-to-image strength in (0, 1]")
    p.add_argument("--mask", type=existing_file, default=None, help="inpainting mask (white = repaint)")
    p.add_argument("--tile", action="store_true", help="seamless tile")
    p.add_argument("--upscale", type=whole(1), default=0, metavar="FACTOR",
                   help="then upscale every image by FACTOR (4) in the same job (default: none)")
    _upscaler_args(p)
    p.add_argument("--format", default="png", choices=["png", "jpeg", "webp", "raw"], help="image encoding")
    p.add_argument("--quality", type=whole(1, 100), default=0, help="JPEG/WEBP quality 1-100")
    p.add_argument("--out", type=Path, default=Path("out"), help="folder for images (default out/)")
    p.add_argument("--priority", default="interactive", choices=["interactive", "batch"])
    p.add_argument("--deadline", type=number(0, above=True), default=None,
                   help="seconds from now by which the job must finish")
    p.add_argument("--preview-every", type=whole(0), default=2, help="preview every N steps (0: none)")
    p.add_argument("--model", default="", help="model name (default: the service's)")
    p.add_argument("--model-version", default="", help="model version (default: newest ready)")
    p.add_argument("--request-id", default="", help="idempotency key")
    p.add_argument("--cancel-on-exit", action="store_true",
                   help="cancel the job if this command is interrupted (nothing to resume then)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _connection_args(p)
    p.set_defaults(func=_generate)


def _upscaler_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--upscale-steps", type=whole(1), default=0, help="upscaler steps (default: the upscaler's)")
    p.add_argument("--upscaler", default="", help="upscaler model (default: the service's)")
    p.add_argument("--upscaler-version", default="", help="upscaler version (default: newest ready)")
    p.add_argument("--upscale-fast", action="store_true", help="the upscaler's one-pass network instead of its steps")


# The file an `atelier upscale --out` name asks for, by its extension.
OUT_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


def _register_upscale(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", type=existing_file, help="the image to upscale (PNG, JPEG or WEBP)")
    p.add_argument("--out", type=Path, default=None,
                   help="the upscaled image: .png, .jpg or .webp (default: IMAGE's name with -x4, beside it)")
    p.add_argument("--factor", type=whole(1), default=4, help="upscale factor: the upscaler's, 4 (default 4)")
    p.add_argument("--seed", type=seed, default=None, help="seed of the upscaler's noise (default: drawn)")
    p.add_argument("--steps", dest="upscale_steps", type=whole(1), default=0, metavar="N",
                   help="upscaler steps (default: its own)")
    p.add_argument("--fast", dest="upscale_fast", action="store_true",
                   help="the upscaler's one-pass network instead of its steps")
    p.add_argument("--upscaler", default="", help="upscaler model (default: the service's)")
    p.add_argument("--upscaler-version", default="", help="upscaler version (default: newest ready)")
    p.add_argument("--quality", type=whole(1, 100), default=0, help="JPEG/WEBP quality 1-100")
    p.add_argument("--priority", default="interactive", choices=["interactive", "batch"])
    p.add_argument("--preview-every", type=whole(0), default=0, help="preview every N steps (0: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _connection_args(p)
    p.set_defaults(func=_upscale)


def _upscale_out(args) -> Path:
    out = args.out or args.image.with_name(f"{args.image.stem}-x{args.factor}.png")
    if out.suffix.lower() not in OUT_FORMATS:
        raise ValueError(f"--out {out}: the name must end in {', '.join(OUT_FORMATS)} (it says the format)")
    return out


def _upscale(args) -> int:
    def action(args) -> int:
        from clients.requests import build_request

        try:
            out = _upscale_out(args)
        except ValueError as err:
            print(f"atelier: {err}", file=sys.stderr)
            return 2
        image = args.image.read_bytes()
        request = build_request(
            upscale_image=image, upscale=args.factor, seeds=[] if args.seed is None else [args.seed],
            upscale_steps=args.upscale_steps, upscale_fast=args.upscale_fast, upscaler=args.upscaler,
            upscaler_version=args.upscaler_version, output_format=OUT_FORMATS[out.suffix.lower()],
            output_quality=args.quality, priority=args.priority, preview_every_steps=args.preview_every,
        )
        with _client(args) as client:

            def events():
                for event in client.generate(request=request):
                    args._job_id = event.job_id
                    yield event

            return _follow(events(), args, out_dir=out.parent, path_for=lambda artifact: out)

    return _run(args, action)


def _client(args):
    from clients.client import Client

    tls = args.tls or args.ca_cert is not None or args.client_cert is not None
    return Client(
        args.gateway or default_gateway(),
        args.api_key or default_api_key(),
        tls=tls,
        root_certificates=args.ca_cert,
        private_key=args.client_key,
        certificate_chain=args.client_cert,
        timeout=args.timeout,
    )


def _explain(err, args) -> str:
    from clients.errors import InvalidArgument, ResourceExhausted

    address = args.gateway or default_gateway()
    name = err.code.name
    if name == "UNAUTHENTICATED":
        return (f"the gateway refused the API key ({err.message}); pass --api-key or set ATELIER_API_KEY "
                "(create one with `atelier gateway add-key --tenant NAME`)")
    if name == "UNAVAILABLE":
        return f"cannot reach the gateway at {address} ({err.message}); is `atelier up` or `atelier gateway` running?"
    if name == "NOT_FOUND":
        return "no such job (unknown id, another tenant's, or expired)"
    if isinstance(err, InvalidArgument):
        lines = ["the gateway rejected the request:"]
        lines += [f"  {v.field}: {v.description}" for v in err.violations] or [f"  {err.message}"]
        return "\n".join(lines)
    if isinstance(err, ResourceExhausted):
        wait = f"; retry in {err.retry_after:.1f} s" if err.retry_after is not None else ""
        return f"the gateway is at capacity: {err.message}{wait}"
    if name == "DEADLINE_EXCEEDED":
        return f"the gateway did not answer within {args.timeout:.0f} s"
    return f"{name}: {err.message}"


def _run(args, action) -> int:
    from clients.errors import AtelierError

    try:
        return action(args)
    except AtelierError as err:
        print(f"atelier: {_explain(err, args)}", file=sys.stderr)
        return EXIT.get(err.code.name, 1)
    except OSError as err:
        print(f"atelier: {err}", file=sys.stderr)
        return 1


def _follow(events, args, out_dir: Path | None = None, path_for=None) -> int:
    from atelier_cli.render import EventWriter

    writer = EventWriter(out_dir or args.out, progress=not args.no_progress, path_for=path_for)
    try:
        for event in events:
            writer.handle(event)
    except KeyboardInterrupt:
        writer.close()
        print(f"\natelier: interrupted; {_after_interrupt(args, writer.last_event_id)}", file=sys.stderr)
        return 130
    finally:
        writer.close()
    if writer.preview is not None:
        print(f"latest preview: {writer.preview}", file=sys.stderr)
    for path in writer.written:
        print(path)
    return 0 if writer.succeeded else 1


def _after_interrupt(args, last_event_id: str) -> str:
    """What became of the job: with --cancel-on-exit the gateway cancels it when the stream drops."""
    job = getattr(args, "_job_id", "")
    if getattr(args, "cancel_on_exit", False):
        return f"job {job} is cancelled (--cancel-on-exit)" if job else "no job was started"
    if job and last_event_id:
        return f"the job goes on; `atelier jobs watch {job} --after {last_event_id}` resumes"
    if job:
        return f"the job goes on; `atelier jobs watch {job}` follows it"
    return "no job was started"


def _generate(args) -> int:
    def action(args) -> int:
        from clients.requests import build_request

        try:
            seeds = consecutive_seeds(args.seed, args.count)
        except ValueError as err:
            print(f"atelier generate: {err}", file=sys.stderr)
            return 2
        width, height = args.size or (0, 0)
        request = build_request(
            args.prompt, negative_prompt=args.negative, style=args.style, model=args.model,
            model_version=args.model_version, width=width, height=height, steps=args.steps,
            sampler=args.sampler or None, guidance_scale=args.guidance, seeds=seeds, count=0 if seeds else args.count,
            init_image=args.init, strength=args.strength, mask=args.mask, tiling=args.tile,
            output_format=args.format, output_quality=args.quality, priority=args.priority,
            deadline=args.deadline, preview_every_steps=args.preview_every, request_id=args.request_id,
            cancel_on_disconnect=args.cancel_on_exit, upscale=args.upscale, upscale_steps=args.upscale_steps,
            upscaler=args.upscaler, upscaler_version=args.upscaler_version, upscale_fast=args.upscale_fast,
        )
        with _client(args) as client:

            def events():
                for event in client.generate(request=request):
                    args._job_id = event.job_id
                    yield event

            return _follow(events(), args)

    return _run(args, action)


def _jobs(args) -> int:
    def action(args) -> int:
        with _client(args) as client:
            if args.jobs_command == "list":
                return print_jobs(client, args)
            if args.jobs_command == "get":
                _print_job(client.get(args.job_id))
                return 0
            if args.jobs_command == "cancel":
                from atelier.v1 import types_pb2

                reply = client.cancel(args.job_id)
                state = types_pb2.JobState.Name(reply.state).removeprefix("JOB_STATE_").lower()
                print(f"job {args.job_id}: {'cancelled' if reply.cancelled else 'already ' + state}")
                return 0
            args._job_id = args.job_id
            return _follow(client.watch(args.job_id, args.after), args)

    return _run(args, action)


def _print_job(job) -> None:
    from atelier.v1 import types_pb2

    def when(ts) -> str:
        return ts.ToDatetime().isoformat(timespec="seconds") + "Z" if ts.seconds else "-"

    rows = [
        ("job", job.job_id),
        ("state", types_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()),
        ("model", f"{job.model}/{job.model_version}"),
        ("priority", types_pb2.Priority.Name(job.priority).removeprefix("PRIORITY_").lower()),
        ("created", when(job.created_at)),
        ("started", when(job.started_at)),
        ("finished", when(job.finished_at)),
        ("steps", f"{job.steps_done}/{job.steps_total}"),
        ("images", f"{job.images_done}/{job.images_total}"),
        ("seeds", " ".join(str(s) for s in job.seeds)),
        ("last event", job.last_event_id or "-"),
    ]
    if job.shards_total:
        rows.append(("shards", f"{job.shards_done}/{job.shards_total} in {job.dataset_output}"))
    if job.error_message:
        rows.append(("error", f"{types_pb2.ErrorCode.Name(job.error_code)}: {job.error_message}"))
    if job.labels:
        rows.append(("labels", " ".join(f"{k}={v}" for k, v in sorted(job.labels.items()))))
    for key, value in rows:
        print(f"{key:>10}  {value}")


def _models(args) -> int:
    def action(args) -> int:
        from clients.requests import sampler_name

        with _client(args) as client:
            models = client.list_models()
        if not models:
            print("no models")
        for m in models:
            if m.upscale_factor:
                _print_upscaler(m)
                continue
            sizes = (f"sides {m.min_size}-{m.max_size} in steps of {m.size_step or m.latent_factor}"
                     if m.other_sizes else "native size only")
            print(f"{m.name}/{m.version}  {'ready' if m.ready else 'not ready'}  {m.width}x{m.height} "
                  f"({sizes})  sha256 {m.sha256[:12]}")
            if m.description:
                print(f"    {m.description}")
            print(f"    styles: {', '.join(m.styles) or '-'}")
            print(f"    default: {sampler_name(m.default_sampler)}, {m.default_steps} steps, "
                  f"guidance {m.default_guidance_scale:g}; tiling {'yes' if m.supports_tiling else 'no'}, "
                  f"image-to-image {'yes' if m.supports_init_image else 'no'}")
            if m.fast:
                print(f"    fast: consistency-distilled, 1-{m.default_steps} steps, one row a step, guidance built in "
                      f"({m.guidance_min:g} to {m.guidance_max:g}, no negative prompt)")
        return 0

    return _run(args, action)


def _print_upscaler(m) -> None:
    print(f"{m.name}/{m.version}  {'ready' if m.ready else 'not ready'}  upscaler x{m.upscale_factor} "
          f"(inputs up to {m.max_input_side} pixels a side)  sha256 {m.sha256[:12]}")
    if m.description:
        print(f"    {m.description}")
    print(f"    default: {m.default_steps} steps; one-pass network {'yes' if m.fast_upscaler else 'no'}")
