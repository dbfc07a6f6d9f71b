"""Where each job kind starts sampling (services/worker/kinds.py), against the papers' recipes
computed here from diffusion/editing.py: text-to-image at the first sigma times the noise over
the whole schedule, image-to-image at the encoded upload noised to the schedule's tail (SDEdit),
inpainting there too, its known latents held to the upload's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from diffusion.editing import Inpaint, img2img_start, latent_mask
from diffusion.noise import initial_noise
from services.common.plan import JobKind
from services.worker.kinds import KINDS
from tests.services import toy_runtime

SHAPE = (4, 4, 4)


def job(strength: float = 0.5) -> SimpleNamespace:
    runtime = toy_runtime.ToyRuntime()
    rng = np.random.default_rng(3)
    mask = np.zeros((16, 16))
    mask[:8] = 1.0  # repaint the top half
    return SimpleNamespace(runtime=runtime, sigmas=np.asarray(runtime.sigmas(10), dtype=np.float64),
                           init_rgba=rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), mask=mask,
                           plan=SimpleNamespace(strength=strength))


def model(x, sigma):
    return x * 0.5


def test_text_to_image_starts_at_the_first_sigma_over_the_whole_schedule():
    j, noise = job(), initial_noise((4, 9), SHAPE, dtype=np.float32)
    start = KINDS[JobKind.TXT2IMG](j, model, noise)
    np.testing.assert_array_equal(start.x, noise * np.float32(j.sigmas[0]))
    assert start.x.dtype == np.float32 and start.model is model
    np.testing.assert_array_equal(start.sigmas, j.sigmas)


def known(j, rows: int) -> np.ndarray:
    return j.runtime.encode(np.repeat(j.init_rgba[None], rows, axis=0)).astype(np.float32)


def test_image_to_image_starts_at_the_upload_noised_to_the_schedule_s_tail():
    j, noise = job(strength=0.3), initial_noise((4, 9), SHAPE, dtype=np.float32)
    start = KINDS[JobKind.IMG2IMG](j, model, noise)
    x, tail = img2img_start(known(j, 2), j.sigmas, 0.3, noise)
    np.testing.assert_array_equal(start.x, x)
    np.testing.assert_array_equal(start.sigmas, tail)
    assert len(tail) < len(j.sigmas) and start.x.dtype == np.float32 and start.model is model


def test_inpainting_holds_the_unmasked_latents_to_the_upload():
    j, noise = job(strength=0.6), initial_noise((4, 9), SHAPE, dtype=np.float32)
    start = KINDS[JobKind.INPAINT](j, model, noise)
    x, tail = img2img_start(known(j, 2), j.sigmas, 0.6, noise)
    np.testing.assert_array_equal(start.x, x)
    np.testing.assert_array_equal(start.sigmas, tail)
    expected = Inpaint(model, known(j, 2), latent_mask(j.mask, SHAPE[1:]).astype(np.float32), noise)
    probe, sigma = np.random.default_rng(5).standard_normal((2, *SHAPE)), np.full(2, 1.5)
    np.testing.assert_array_equal(start.model(probe, sigma), expected(probe, sigma))
    out = start.model(probe, sigma)
    np.testing.assert_array_equal(out[:, :, 2:], known(j, 2)[:, :, 2:])  # the bottom half: the upload's
    assert not np.array_equal(out[:, :, :2], known(j, 2)[:, :, :2])
