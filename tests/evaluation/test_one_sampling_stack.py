"""Training's sample grid, evaluation and the EDM scalings share one implementation each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffusion.denoisers import EDMDenoiser as NumpyEDMDenoiser
from diffusion.evaluation.pipeline import load_latent_model
from diffusion.nets.config import EDMConfig
from diffusion.nets.edm import EDMDenoiser as TorchEDMDenoiser
from diffusion.text_to_image import generate
from diffusion.training.unet_trainer import GRID_GUIDANCE, GRID_PROMPTS, GRID_SAMPLER, GRID_STEPS, sample_grid

from .tiny_model import fake_text, write_tiny_runs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    run = write_tiny_runs(tmp_path_factory.mktemp("runs"), ["none", "google", "twitter"], image_size=16)
    model, _ = load_latent_model(run, text=fake_text)
    return model


def test_a_grid_cell_is_the_image_of_its_prompt_style_and_seed_alone(tiny):
    styles = [1, 2]
    sheet = sample_grid(tiny, styles, seed=40)
    assert sheet.shape[0] == len(GRID_PROMPTS) * len(styles)
    # Prompt p in style s is cell p * S + s and draws with seed 40 + p, whatever the batch around it.
    for p, s in ((0, 0), (3, 1), (len(GRID_PROMPTS) - 1, 1)):
        alone = generate(tiny, [GRID_PROMPTS[p]], [styles[s]], [40 + p], steps=GRID_STEPS, sampler=GRID_SAMPLER,
                         guidance=GRID_GUIDANCE)
        np.testing.assert_array_equal(sheet[p * len(styles) + s], alone[0])
    # Each prompt draws its own noise (the untrained model's style embedding starts at zero, so
    # styles are not compared here).
    assert not np.array_equal(sheet[0], sheet[2])


class _Net(torch.nn.Module):
    """F(x_in, c_noise, ...) = x_in * (1 + c_noise): exposes c_in and c_noise in the output."""

    def forward(self, x, c_noise, *_):
        return x * (1.0 + c_noise.reshape(-1, 1, 1, 1))


def test_the_torch_and_numpy_edm_denoisers_agree():
    x = np.random.default_rng(0).standard_normal((3, 4, 5, 5)).astype(np.float32)
    sigma = np.array([0.002, 0.7, 80.0], dtype=np.float32)
    torch_d = TorchEDMDenoiser(_Net(), EDMConfig(sigma_data=0.5))
    with torch.no_grad():
        want = torch_d(torch.from_numpy(x), torch.from_numpy(sigma), None, None, None).numpy()
    numpy_d = NumpyEDMDenoiser(lambda x_in, c_noise, _: x_in * (1.0 + c_noise.reshape(-1, 1, 1, 1)), 0.5)
    got = numpy_d(x, sigma.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    # Karras et al. 2022, Table 1, by hand for the middle row: D = c_skip x + c_out c_in x (1 + ln(s)/4).
    s, sd = 0.7, 0.5
    by_hand = (sd**2 / (s**2 + sd**2) + s * sd / (s**2 + sd**2) * (1 + np.log(s) / 4)) * x[1]
    np.testing.assert_allclose(got[1], by_hand, rtol=1e-5)
