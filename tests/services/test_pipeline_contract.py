"""What a job's events tell its user (services/worker/pipeline.py): previews at the requested steps
and labelled with them, progress from zero, provenance naming the model version, the software
and how the image finished, and the requested output quality."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest

from services.common.events import EventKind
from services.common.jobs import JobState
from tests.services.test_pipeline import encoded, executor, models, raw_images, store, submit  # noqa: F401 - fixtures

pytestmark = pytest.mark.redis


def events_of(store, job_id, kind):  # noqa: F811 - the store fixture
    return [e for e in store.read_events(job_id) if e.kind == kind]


def test_previews_come_at_every_nth_step_before_the_last_labelled_with_their_step(store, executor):  # noqa: F811
    job_id = submit(store, seeds=(1, 2), steps=6, sampler="euler", preview_every_steps=3)
    assert executor.run(job_id) == JobState.SUCCEEDED
    previews = [(e.data["index"], e.data["step"]) for e in events_of(store, job_id, EventKind.PREVIEW)]
    assert sorted(previews) == [(0, 3), (1, 3)]  # step 6 is the image itself, not a preview


def test_progress_starts_at_zero_steps_and_zero_images(store, executor):  # noqa: F811
    job_id = submit(store, seeds=(1,), steps=3, sampler="euler")
    assert executor.run(job_id) == JobState.SUCCEEDED
    first = events_of(store, job_id, EventKind.PROGRESS)[0].data
    assert (first["step"], first["total_steps"], first["images_done"]) == (0, 3, 0)


def test_provenance_names_the_model_version_the_software_and_a_completed_image(store, executor):  # noqa: F811
    job_id = submit(store, seeds=(1,), steps=2)
    assert executor.run(job_id) == JobState.SUCCEEDED
    artifact = events_of(store, job_id, EventKind.ARTIFACT)[0].data
    assert artifact["finish_reason"] == "COMPLETED"
    assert artifact["provenance"]["model_version"] == "1"
    assert artifact["provenance"]["software_version"] == metadata.version("atelier")


def test_the_requested_quality_sizes_a_lossy_image(store, executor):  # noqa: F811
    sizes = {}
    for quality in (5, 95):
        job_id = submit(store, seeds=(3,), steps=2, output_format="jpeg", output_quality=quality, width=64, height=64)
        assert executor.run(job_id) == JobState.SUCCEEDED
        sizes[quality] = len(events_of(store, job_id, EventKind.ARTIFACT)[0].blob)
    assert sizes[5] < sizes[95]


INIT = np.full((16, 16, 4), 200, np.uint8)
HALF = np.zeros((16, 16), np.uint8)
HALF[:, 8:] = 255


@pytest.mark.parametrize("changes, reason", [
    (dict(width=18, height=16), "width and height must be multiples of 4, got 18x16"),
    (dict(sampler="nope"), "unknown sampler 'nope'"),
    (dict(mask=encoded(HALF)), "a mask needs an init image"),
    (dict(init_image=encoded(INIT)), "strength must be in (0, 1] with an init image"),
    (dict(init_image=encoded(INIT), strength=1.5), "strength must be in (0, 1] with an init image"),
], ids=["width not a multiple", "unknown sampler", "mask alone", "init image without strength", "strength above 1"])
def test_a_job_the_model_cannot_make_fails_with_the_reason(store, executor, changes, reason):  # noqa: F811
    job_id = submit(store, **changes)
    assert executor.run(job_id) == JobState.FAILED
    assert reason in store.get(job_id).error_message


def test_guidance_and_its_rescale_change_the_image_and_text_alone_has_no_strength(store, executor):  # noqa: F811
    images = {}
    for guidance, rescale in ((2.0, 0.0), (6.0, 0.0), (6.0, 0.7)):
        job_id = submit(store, seeds=(5,), steps=4, guidance_scale=guidance, guidance_rescale=rescale)
        assert executor.run(job_id) == JobState.SUCCEEDED
        images[guidance, rescale] = raw_images(store, job_id)[0]
        prov = events_of(store, job_id, EventKind.ARTIFACT)[0].data["provenance"]
        assert (prov["guidance_scale"], prov["guidance_rescale"], prov["strength"]) == (guidance, rescale, 0.0)
    assert not np.array_equal(images[2.0, 0.0], images[6.0, 0.0])
    assert not np.array_equal(images[6.0, 0.0], images[6.0, 0.7])
