"""The image labelled seed s is seed s's image, at every position of unsorted and repeated seed
lists, alone and in bulk (many-prompt) jobs: byte for byte the image of a one-image job with
seed s. Chunks of several images share one sampler run, so a chunk that reorders its seeds
would hand one image another's noise.
"""

from __future__ import annotations

import functools

import pytest

from services.common.events import EventKind
from services.common.jobs import JobSpec, JobState, PromptSpec
from services.common.settings import Settings
from services.common.store import JobStore
from services.worker.executor import JobExecutor
from services.worker.models import ModelRegistry
from tests.services import toy_runtime

PROMPTS = (PromptSpec("a red apple", "blurry", "flat"), PromptSpec("a blue gem", "", "pixel"))
SEED_LISTS = [(9, 3), (3, 9, 3), (5, 1, 4, 1)]


def spec(prompts, seeds) -> JobSpec:
    # euler_ancestral draws fresh noise every step: both the start and the steps depend on the seed.
    return JobSpec(prompts=tuple(prompts), seeds=tuple(seeds), output_format="raw_rgba8", steps=4,
                   sampler="euler_ancestral", guidance_scale=2.0)


@functools.cache
def solo(prompt_index: int, seed: int) -> bytes:
    """The one image of a one-image job (prompt, seed)."""
    ((_, blob),) = toy_runtime.made_alone(spec([PROMPTS[prompt_index]], [seed]))
    return blob


# 8 rows a chunk: 4 guided images share a run; 6 rows: chunks of 3 that straddle seeds and prompts.
@pytest.mark.parametrize("rows_per_chunk", [8, 6])
@pytest.mark.parametrize("prompts", [1, 2], ids=["one prompt", "bulk"])
@pytest.mark.parametrize("seeds", SEED_LISTS, ids=str)
def test_every_image_is_its_labelled_seed_s_image(seeds, prompts, rows_per_chunk):
    arts = toy_runtime.made_alone(spec(PROMPTS[:prompts], seeds), rows_per_chunk)
    expected = [(p, s) for p in range(prompts) for s in seeds]
    assert [(d["prompt_index"], d["seed"]) for d, _ in arts] == expected
    for data, blob in arts:
        assert blob == solo(data["prompt_index"], data["seed"]), (
            f"image {data['index']} (prompt {data['prompt_index']}, seed {data['seed']}) is not that seed's image")
    # Repeated seeds give identical images, distinct seeds different ones.
    by_label = {(d["prompt_index"], d["seed"]): blob for d, blob in arts}
    assert len(set(by_label.values())) == len(by_label)


@pytest.mark.redis
def test_what_a_reader_of_the_store_sees_is_labelled_right(redis_client):
    store = JobStore(redis_client, key_prefix="t:")
    registry = ModelRegistry(lambda m, v: toy_runtime.load(None, m, v), max_batch=6, wait_ms=0)
    executor = JobExecutor(store, registry, Settings.from_env({}, default_model="toy", max_batch=6))
    try:
        job_id, _ = store.create("acme", toy_runtime.planned(spec(PROMPTS, (5, 1, 4, 1))))
        assert executor.run(job_id) == JobState.SUCCEEDED
    finally:
        registry.close()
    arts = [e for e in store.read_events(job_id) if e.kind == EventKind.ARTIFACT]
    assert [(a.data["prompt_index"], a.data["seed"]) for a in arts] == [(p, s) for p in (0, 1) for s in (5, 1, 4, 1)]
    for a in arts:
        assert a.blob == solo(a.data["prompt_index"], a.data["seed"])
        assert store.artifact_bytes(job_id, a.data["index"]) == a.blob
