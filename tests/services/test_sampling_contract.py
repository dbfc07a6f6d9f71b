"""Seeds decide images wherever randomness enters sampling (services/worker/pipeline.py): the
per-step noise of stochastic samplers, and the init image's latents repeated for a bulk job."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.jobs import JobState
from tests.services.test_pipeline import encoded, executor, models, raw_images, store, submit  # noqa: F401 - fixtures

pytestmark = pytest.mark.redis


def images_of(store, executor, **changes) -> dict[int, np.ndarray]:  # noqa: F811 - the fixtures
    job_id = submit(store, **changes)
    assert executor.run(job_id) == JobState.SUCCEEDED
    return raw_images(store, job_id)


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde"])
def test_a_stochastic_sampler_s_image_is_its_seed_s_alone(store, executor, sampler):  # noqa: F811
    alone = images_of(store, executor, seeds=(4,), steps=4, sampler=sampler)[0]
    assert np.array_equal(images_of(store, executor, seeds=(4,), steps=4, sampler=sampler)[0], alone)
    assert np.array_equal(images_of(store, executor, seeds=(9, 4), steps=4, sampler=sampler)[1], alone)


def test_image_to_image_in_bulk_gives_each_seed_its_own_image(store, executor):  # noqa: F811
    init = np.zeros((16, 16, 4), np.uint8)
    init[..., 1], init[..., 3] = 180, 255
    common = dict(init_image=encoded(init), strength=0.6, steps=4)
    alone = images_of(store, executor, seeds=(2,), **common)[0]
    bulk = images_of(store, executor, seeds=(1, 2), **common)
    assert np.array_equal(bulk[1], alone) and not np.array_equal(bulk[0], alone)
