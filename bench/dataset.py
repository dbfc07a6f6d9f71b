"""A dataset job against the same images as individual jobs (issue 16.1): `python -m bench.dataset`.

The real stack (atelier_cli.up.EmbeddedStack: a private Redis database, the gRPC gateway, one
`atelier worker` process at its default concurrency on the shipped model) makes the same images
twice in one run, so the machine's load falls on both sides alike:

(a) one dataset job of prompts x styles x seeds (its default shards), Submit to finished;
(b) the same images as one-image jobs at batch priority, all submitted at once through the SDK
    (from a few threads), first Submit to the last job finished.

Both at the model's defaults. The figure is images/s of each side and their ratio (dataset /
individual); a sample of images is compared: the same provenance on both sides, and how many have
identical pixels (the largest difference when not: batches of other compositions). With
--rounds 2 or more the sides alternate (ABBA). The tenant's admission limits are raised for the
run (the individual side is one tenant's thousands of jobs); nothing else is changed. Prints
progress, the machine's load (`uptime`) before and after, and ends with one JSON line
(bench.report). --quick: a tiny random model and a few dozen images (a smoke run).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from bench.batching import PROMPTS
from bench.fast import uptime
from bench.report import finish

SHIPPED = Path(__file__).resolve().parents[1] / "models"


def _log(message: str) -> None:
    print(message, flush=True)


def layout(images: int, styles: list[str], prompts: list[str] = PROMPTS) -> tuple[list[str], list[str], list[int]]:
    """(prompts, styles, seeds) making exactly ``images`` images: every style, as many prompts as
    divide the count, the rest in seeds."""
    per_style = images // len(styles)
    if per_style * len(styles) != images:
        raise ValueError(f"{images} images do not split over {len(styles)} styles")
    n_prompts = max(p for p in range(1, len(prompts) + 1) if per_style % p == 0)
    return prompts[:n_prompts], styles, list(range(per_style // n_prompts))


def images_of(prompts: list[str], styles: list[str], seeds: list[int]) -> list[tuple[str, str, int]]:
    """(prompt, style, seed) of each image in the dataset's order: prompt-major, then style, then seed."""
    return [(p, s, seed) for p in prompts for s in styles for seed in seeds]


def run_dataset(client, store, prompts, styles, seeds, output: str) -> dict:
    started = time.perf_counter()
    job_id = client.submit(prompts=prompts, seeds=seeds, dataset={"output": output, "styles": styles}).job_id
    job = _wait(store, [job_id])
    wall = time.perf_counter() - started
    record = store.get(job_id)
    if record.state != "SUCCEEDED":
        raise RuntimeError(f"the dataset job ended {record.state}: {record.error_message}")
    return {"wall_s": wall, "images": record.images_done, "shards": record.shards_done, "job_id": job_id,
            "images_per_s": record.images_done / wall, "last": job}


def run_individual(client, store, todo: list[tuple[str, str, int]], threads: int = 4) -> dict:
    ids: list[str | None] = [None] * len(todo)

    def submit(part: int) -> None:
        for i in range(part, len(todo), threads):
            prompt, style, seed = todo[i]
            ids[i] = client.submit(prompt, style=style, seeds=[seed], priority="batch").job_id

    started = time.perf_counter()
    workers = [threading.Thread(target=submit, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    submitted = time.perf_counter() - started
    _wait(store, ids)
    wall = time.perf_counter() - started
    failed = [j for j in ids if store.get(j).state != "SUCCEEDED"]
    if failed:
        raise RuntimeError(f"{len(failed)} individual jobs did not succeed, e.g. {store.get(failed[0]).error_message}")
    return {"wall_s": wall, "images": len(ids), "submit_s": submitted, "images_per_s": len(ids) / wall, "ids": ids}


def _wait(store, ids: list[str], poll: float = 0.5) -> float:
    pending = set(ids)
    while pending:
        pipe = store.client.pipeline()
        order = sorted(pending)
        for j in order:
            pipe.hget(store.job_key(j), "state")
        for j, state in zip(order, pipe.execute(), strict=True):
            if state in (b"SUCCEEDED", b"FAILED", b"CANCELLED", b"EXPIRED"):
                pending.discard(j)
        if pending:
            time.sleep(poll)
    return time.perf_counter()


def picture(png: bytes):
    """A PNG's pixels (int16, to subtract) and text chunks (provenance); an individual job's file
    also carries its content credentials (C2PA, unique to each signing), a dataset's does not."""
    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    return np.asarray(image, dtype=np.int16), dict(image.text)


def same_images(store, folder: Path, individual_ids: list[str], sample: int) -> dict:
    """``sample`` images, evenly spaced, compared between the sides: the provenance must be the same
    (raises otherwise); how many have identical pixels, and the largest difference of any pixel
    (ONNX Runtime's kernels may round differently for other batch compositions)."""
    png = {}
    for shard in sorted(folder.glob("*.tar")):
        with tarfile.open(fileobj=io.BytesIO(shard.read_bytes())) as tar:
            for m in tar:
                if m.name.endswith(".png"):
                    png[int(m.name.split(".")[0])] = tar.extractfile(m).read()
    picks = sorted({round(i * (len(individual_ids) - 1) / max(1, sample - 1)) for i in range(sample)})
    identical, largest = 0, 0
    for i in picks:
        (a, text_a), (b, text_b) = picture(store.artifact_bytes(individual_ids[i], 0)), picture(png[i])
        if text_a != text_b or a.shape != b.shape:
            raise AssertionError(f"image {i}: the dataset's provenance differs from the individual job's")
        diff = int(abs(a - b).max())
        identical += diff == 0
        largest = max(largest, diff)
    return {"checked": len(picks), "pixels_identical": identical, "max_pixel_difference": largest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000, help="images on each side (default 10000)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of both sides, alternating (ABBA)")
    parser.add_argument("--concurrency", type=int, default=0, help="worker threads (default: the worker's default)")
    parser.add_argument("--check", type=int, default=16,
                        help="images whose pixels and provenance are compared between the sides")
    parser.add_argument("--quick", action="store_true", help="tiny random model, 48 images: a smoke run")
    args = parser.parse_args(argv)

    import redis

    from atelier_cli.up import EmbeddedStack
    from clients import Client
    from repository.reader import ModelRepository
    from services.common.settings import Settings
    from services.common.store import JobStore

    tmp = Path(tempfile.mkdtemp(prefix="atelier-bench-dataset-"))
    if args.quick:
        from bench.tiny_models import tiny_repository

        repo, model, images = tiny_repository(tmp / "model"), "tiny", 48
    else:
        repo, model, images = SHIPPED, Settings().default_model, args.images
    settings = Settings.from_env({}, model_repository=repo, default_model=model, grpc_listen="127.0.0.1:0",
                                 gateway_metrics_port=0, worker_metrics_port=0, dataset_dir=tmp / "datasets",
                                 tenant_max_jobs_in_flight=10 * images, tenant_jobs_per_minute=100 * images,
                                 max_queue_depth_batch=10 * images)
    version = sorted(ModelRepository(repo).versions(model), key=int)[-1]
    styles = list(ModelRepository(repo).open(model, version).manifest.styles)
    prompts, styles, seeds = layout(images, styles)
    todo = images_of(prompts, styles, seeds)
    load_before = uptime()
    _log(f"{images} images: {len(prompts)} prompts x {len(styles)} styles x {len(seeds)} seeds on {model}/{version}; "
         f"{load_before}")
    concurrency = args.concurrency or settings.worker_concurrency
    runs: dict[str, list[dict]] = {"dataset": [], "individual": []}
    with EmbeddedStack(settings, state_dir=tmp / "up", worker_concurrency=concurrency) as stack, \
            Client(stack.address, stack.api_key, timeout=60.0) as client:
        store = JobStore(redis.Redis.from_url(stack.settings.redis_url), stack.settings.key_prefix)
        client.submit(prompts[0], style=styles[0], seeds=[0], priority="batch")  # untimed: model warm-up
        time.sleep(5)
        checked: dict = {}
        for r in range(args.rounds):
            order = ["dataset", "individual"] if r % 4 in (0, 3) else ["individual", "dataset"]
            for side in order:
                if side == "dataset":
                    res = run_dataset(client, store, prompts, styles, seeds, f"round{r}")
                    res["folder"] = str(tmp / "datasets" / f"round{r}")
                else:
                    res = run_individual(client, store, todo)
                runs[side].append(res)
                _log(f"[round {r + 1}] {side:10s}: {res['images']} images in {res['wall_s']:.1f} s = "
                     f"{res['images_per_s']:.2f} images/s")
            checked = same_images(store, Path(runs["dataset"][-1]["folder"]), runs["individual"][-1]["ids"],
                                  args.check)
    load_after = uptime()
    shutil.rmtree(tmp, ignore_errors=True)

    def best(side: str) -> float:
        return max(r["images_per_s"] for r in runs[side])

    figures = {
        "model": f"{model}/{version}", "images": images, "prompts": len(prompts), "styles": len(styles),
        "seeds": len(seeds), "worker_concurrency": concurrency, "rounds": args.rounds,
        "dataset_images_per_s": [round(r["images_per_s"], 3) for r in runs["dataset"]],
        "individual_images_per_s": [round(r["images_per_s"], 3) for r in runs["individual"]],
        "dataset_wall_s": [round(r["wall_s"], 1) for r in runs["dataset"]],
        "individual_wall_s": [round(r["wall_s"], 1) for r in runs["individual"]],
        "individual_submit_s": [round(r["submit_s"], 1) for r in runs["individual"]],
        "shards": runs["dataset"][-1]["shards"],
        "ratio_dataset_over_individual": round(best("dataset") / best("individual"), 3),
        "images_compared": checked,
        "load_before": load_before, "load_after": load_after,
    }
    _log(json.dumps({k: v for k, v in figures.items() if "load" not in k}))
    finish("dataset", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
