"""Job kinds: how a job's sampling starts, one registered function per kind.

Every kind shares the stages (services/worker/stages.py); a kind decides only where sampling
starts and what it samples: text-to-image from pure noise over the whole schedule,
image-to-image from the init image noised to the schedule's tail (SDEdit, Meng et al. 2022),
inpainting like image-to-image with the unmasked latents held to the init image's. A new kind
is one function here (or in its own module) plus its line in :data:`KINDS`, and its name in
:class:`services.common.plan.JobKind`. An UPSCALE job samples nothing here: its plan's stages
begin at the upscale stage (services/worker/upscaling.py), which starts from its upload. A
DATASET job starts as text-to-image does; its shards are services/worker/datasets.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from diffusion.editing import Inpaint, img2img_start, latent_mask
from services.common.plan import JobKind

SampleFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Start:
    """Where a chunk's sampler starts: latents, the sigmas it runs, the function it samples."""

    x: np.ndarray
    sigmas: np.ndarray
    model: SampleFn


def _known_latents(job, rows: int) -> np.ndarray:
    return job.runtime.encode(np.repeat(job.init_rgba[None], rows, axis=0)).astype(np.float32)


def text_to_image(job, model: SampleFn, noise0: np.ndarray) -> Start:
    return Start(noise0 * np.float32(job.sigmas[0]), job.sigmas, model)


def image_to_image(job, model: SampleFn, noise0: np.ndarray) -> Start:
    x, sigmas = img2img_start(_known_latents(job, len(noise0)), job.sigmas, job.plan.strength, noise0)
    return Start(x, sigmas, model)


def inpaint(job, model: SampleFn, noise0: np.ndarray) -> Start:
    known = _known_latents(job, len(noise0))
    x, sigmas = img2img_start(known, job.sigmas, job.plan.strength, noise0)
    m = latent_mask(job.mask, noise0.shape[2:]).astype(np.float32)
    return Start(x, sigmas, Inpaint(model, known, m, noise0))


KINDS: dict[str, Callable[..., Start]] = {
    JobKind.TXT2IMG: text_to_image,
    JobKind.IMG2IMG: image_to_image,
    JobKind.INPAINT: inpaint,
    JobKind.DATASET: text_to_image,  # its images are text-to-image ones; only where they go differs
}
