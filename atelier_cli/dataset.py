"""`atelier dataset SPEC --out PATH|s3://...` and `atelier dataset inspect PATH|s3://...`.

The first submits a dataset job (atelier_cli/dataset_spec.py reads the spec) and follows it with
a progress bar of images and shards until its index is written; the second reads a written
dataset (a folder, or an S3-compatible store's prefix), checks every shard against the index,
prints its counts and draws a contact sheet of a sample (docs/API.md, "Dataset jobs").
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
from collections import Counter
from pathlib import Path

from atelier_cli.arguments import whole
from atelier_cli.dataset_spec import SpecError, checked_output, load
from services.common.datasets import INDEX_NAME, MAX_SHARD_SIZE, S3_SCHEME


def register(parser: argparse.ArgumentParser, name: str = "dataset") -> None:
    from atelier_cli.commands import _connection_args

    parser.usage = ("atelier dataset SPEC --out PATH|s3://BUCKET/PREFIX [options]\n"
                    "       atelier dataset inspect PATH|s3://BUCKET/PREFIX [--sheet FILE] [--sample N]")
    parser.add_argument("spec", metavar="SPEC", help="dataset spec (JSON), or `inspect`")
    parser.add_argument("location", nargs="?", metavar="PATH", help="with `inspect`: the dataset to read")
    make = parser.add_argument_group("making a dataset")
    make.add_argument("--out", help="where the workers write it: a folder under their dataset directory "
                                    "(ATELIER_DATASET_DIR) or s3://bucket/prefix (default: the spec's `output`)")
    make.add_argument("--shard-size", type=whole(1, MAX_SHARD_SIZE), help="images per shard (default: the spec's, "
                                                                          "else 256)")
    make.add_argument("--detach", action="store_true", help="submit, print the job id and return")
    make.add_argument("--no-progress", action="store_true", help="no progress bar")
    look = parser.add_argument_group("inspecting a dataset")
    look.add_argument("--sheet", type=Path, help="contact sheet file (default: contact_sheet.png)")
    look.add_argument("--sample", type=whole(1, 1024), default=16, help="images on the contact sheet (default 16)")
    look.add_argument("--s3-endpoint", default=None, help="S3-compatible endpoint URL of s3:// datasets "
                                                          "(env ATELIER_DATASET_S3_ENDPOINT; empty: AWS)")
    _connection_args(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.spec == "inspect":
        if not args.location:
            print("atelier dataset inspect: give the dataset's folder or s3://bucket/prefix", file=sys.stderr)
            return 2
        return inspect(args)
    if args.location:
        print(f"atelier dataset: unexpected {args.location!r} after the spec (see `atelier dataset --help`)",
              file=sys.stderr)
        return 2
    return make(args)


# --- making


def make(args) -> int:
    from atelier_cli.commands import _client, _run

    try:
        spec = load(Path(args.spec))
        output = checked_output(args.out) if args.out else spec.options.get("output")
        if not output:
            raise SpecError("--out is missing (and the spec names no 'output'): a folder or s3://bucket/prefix")
    except SpecError as err:
        print(f"atelier dataset: {err}", file=sys.stderr)
        return 2

    def action(args) -> int:
        from clients.requests import build_request

        request = build_request(**spec.request_fields(output, args.shard_size))
        with _client(args) as client:
            handle = client.submit(request=request)
            print(f"dataset job {handle.job_id}: {spec.images} images to {_shown(output)}", file=sys.stderr)
            if args.detach:
                print(handle.job_id)
                return 0
            return _follow(client, handle.job_id, spec.images, output, not args.no_progress)

    return _run(args, action)


def _shown(output: str) -> str:
    return output if output.startswith(S3_SCHEME) else f"{output} (in the workers' dataset directory)"


def _follow(client, job_id: str, images: int, output: str, progress: bool) -> int:
    from tqdm import tqdm

    from atelier.v1 import types_pb2

    bar = tqdm(total=images, unit="img", desc="dataset", disable=not progress, file=sys.stderr)
    finished = None
    try:
        for event in client.watch(job_id):
            case = event.WhichOneof("event")
            if case == "progress":
                p = event.progress
                made = p.step * images // p.total_steps if p.total_steps else 0
                bar.update(max(made, p.images_done) - bar.n)
                bar.set_postfix_str(f"shards {p.shards_done}/{p.shards_total}, {p.images_done} images written")
            elif case == "finished":
                finished = event.finished
    except KeyboardInterrupt:
        bar.close()
        print(f"\natelier: interrupted; the job goes on: `atelier jobs get {job_id}` shows it", file=sys.stderr)
        return 130
    finally:
        bar.close()
    job = client.get(job_id)
    if finished is not None and finished.state == types_pb2.JOB_STATE_SUCCEEDED:
        print(f"{job.images_done} images in {job.shards_done} shards written to {_shown(job.dataset_output)}")
        return 0
    state = types_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower()
    print(f"atelier dataset: job {job_id} {state}: {job.error_message or 'no message'}; "
          f"{job.shards_done} of {job.shards_total} shards written", file=sys.stderr)
    return 1


# --- inspecting


def inspect(args) -> int:
    from services.common.dataset_store import BucketFiles, FolderFiles, s3_client
    from services.common.datasets import parse_output

    where = args.location
    try:
        if where.startswith(S3_SCHEME):
            location = parse_output(where)
            endpoint = args.s3_endpoint if args.s3_endpoint is not None else os.environ.get(
                "ATELIER_DATASET_S3_ENDPOINT", "")
            files = BucketFiles(s3_client(endpoint, os.environ.get("ATELIER_DATASET_S3_REGION", "")),
                                location.bucket, location.path)
        else:
            files = FolderFiles(Path(where).expanduser())
        return _inspect(files, args.sheet or Path("contact_sheet.png"), args.sample)
    except Exception as err:  # noqa: BLE001 - a missing dataset, bucket or credentials: one line, no traceback
        print(f"atelier dataset inspect: {where}: {_reason(err)}", file=sys.stderr)
        return 1


def _reason(err: Exception) -> str:
    if isinstance(err, FileNotFoundError):
        return f"no {Path(err.filename).name if err.filename else 'such file'} there (not a dataset?)"
    return str(err) or type(err).__name__


def _inspect(files, sheet: Path, sample: int) -> int:
    from services.common.shards import read_shard

    index = json.loads(files.get(INDEX_NAME))
    listed = {s["file"]: s for s in index["shards"]}
    present = [n for n in files.names() if n.endswith(".tar")]
    problems = [f"{n}: in the index, not in the store" for n in sorted(set(listed) - set(present))]
    problems += [f"{n}: in the store, not in the index" for n in sorted(set(present) - set(listed))]
    styles, prompts, seen = Counter(), set(), []
    total_bytes = 0
    for name in sorted(set(listed) & set(present)):
        data = files.get(name)
        total_bytes += len(data)
        if hashlib.sha256(data).hexdigest() != listed[name]["sha256"]:
            problems.append(f"{name}: its sha256 differs from the index's")
        samples = list(read_shard(data))
        if len(samples) != listed[name]["images"]:
            problems.append(f"{name}: {len(samples)} samples, the index says {listed[name]['images']}")
        for s in samples:
            meta = json.loads(s.members["json"])
            styles[meta["style"] or "(none)"] += 1
            prompts.add(meta["prompt"])
            seen.append((meta["index"], name, s.key))
    plan = index.get("plan", {})
    print(f"dataset:  {files} ({index['layout']}, job {index['job_id']})")
    print(f"shards:   {len(present)} ({len(listed)} in the index, pattern {index['urls']})")
    print(f"images:   {len(seen)} ({index['images']} in the index), {total_bytes / 2**20:.1f} MiB")
    print(f"prompts:  {len(prompts)} distinct; styles: "
          + ", ".join(f"{k} {v}" for k, v in sorted(styles.items())))
    print(f"model:    {plan.get('model')}/{plan.get('model_version')}, {plan.get('sampler')} "
          f"{plan.get('steps')} steps, guidance {plan.get('guidance_scale')}, {plan.get('width')}x{plan.get('height')}")
    duplicates = len(seen) - len({i for i, _, _ in seen})
    if duplicates:
        problems.append(f"{duplicates} image indices appear twice")
    if seen:
        picked = _contact_sheet(files, sorted(seen), sample, sheet)
        print(f"sheet:    {sheet} ({picked} images, evenly spaced through the dataset)")
    for p in problems:
        print(f"problem:  {p}")
    return 1 if problems else 0


def _contact_sheet(files, seen: list[tuple[int, str, str]], sample: int, path: Path) -> int:
    """A grid of ``sample`` images evenly spaced through the dataset, each labelled with its key."""
    try:
        from PIL import Image, ImageDraw
    except ModuleNotFoundError:
        raise RuntimeError("the contact sheet needs Pillow: pip install 'atelier[datasets]'") from None
    from services.common.shards import read_shard

    n = min(sample, len(seen))
    picks = [seen[round(i * (len(seen) - 1) / max(1, n - 1))] for i in range(n)]
    wanted: dict[str, set[str]] = {}
    for _, shard, key in picks:
        wanted.setdefault(shard, set()).add(key)
    found = {}
    for shard, keys in wanted.items():
        for s in read_shard(files.get(shard)):
            if s.key in keys:
                found[s.key] = s
    tiles = [Image.open(io.BytesIO(found[key].members["png"])).convert("RGBA") for _, _, key in picks]
    cell = max(64, max(max(t.size) for t in tiles))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    label = 14
    sheet = Image.new("RGBA", (cols * (cell + 4), rows * (cell + 4 + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, ((_, _, key), tile) in enumerate(zip(picks, tiles, strict=True)):
        scale = max(1, cell // max(tile.size))
        tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
        x, y = (i % cols) * (cell + 4) + 2, (i // cols) * (cell + 4 + label) + 2
        sheet.alpha_composite(tile, (x, y))
        draw.text((x, y + cell + 1), key, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return n
