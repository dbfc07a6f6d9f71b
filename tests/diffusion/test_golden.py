"""Golden numbers pin every sampler's output on a fixed toy problem.

Produced once (2026-11-28) by running each sampler exactly as in ``run`` below (toy mixture,
seeds [0, 1, 2**63], Karras sigmas 8 steps from 10 to 0.01, ``SeededNoise``) and printing
``np.round(out, 10).tolist()``.  A change here changes every image the service makes: update the
numbers only for an intended change of the numerics, and say so in the commit.
"""

import numpy as np
import pytest

from diffusion.noise import SeededNoise, initial_noise
from diffusion.samplers import SAMPLERS
from diffusion.schedules import karras_sigmas
from diffusion.toy import GaussianMixture

TOY = GaussianMixture(
    np.array([0.3, 0.7]),
    np.array([[1.0, -0.5, 0.25], [-1.0, 0.5, 0.0]]),
    np.array([np.diag([0.1, 0.2, 0.05]), np.eye(3) * 0.15]),
)
SEEDS = [0, 1, 2**63]

GOLDEN = {
    "ddim": [
        [-0.3609966531, -0.2364931897, 0.0636720314],
        [-0.9335215681, 0.3316769253, -0.2415239666],
        [0.7287307103, -0.1545159777, 0.1937634664],
    ],
    "ddpm": [
        [0.601134177, -0.1339772047, 0.4352255799],
        [-0.8441458101, 0.5398117167, -0.0480476795],
        [1.2446767326, -0.1489391324, 0.3272713824],
    ],
    "dpmpp_2m": [
        [-0.1252974222, -0.5027459629, 0.0989075458],
        [-1.074535877, 0.3465176516, -0.3629334035],
        [1.1226424697, -0.2915747633, 0.2273351022],
    ],
    "dpmpp_2m_sde": [
        [1.1566522802, -0.4325894115, 0.5949251889],
        [-1.1602749736, 0.7199673861, -0.1096341727],
        [1.8748677131, -0.2253630835, 0.5006632663],
    ],
    "euler": [
        [-0.3609966531, -0.2364931897, 0.0636720314],
        [-0.9335215681, 0.3316769253, -0.2415239666],
        [0.7287307103, -0.1545159777, 0.1937634664],
    ],
    "euler_ancestral": [
        [0.601134177, -0.1339772047, 0.4352255799],
        [-0.8441458101, 0.5398117167, -0.0480476795],
        [1.2446767326, -0.1489391324, 0.3272713824],
    ],
    "heun": [
        [0.2080257312, -0.6802934572, 0.1518024827],
        [-1.0469564256, 0.3255286885, -0.3725331081],
        [1.062302482, -0.2670569093, 0.2146806288],
    ],
    "unipc": [
        [0.0075064712, -0.5701001971, 0.1224610242],
        [-1.0621258557, 0.3364553876, -0.368330269],
        [1.1172325253, -0.28995766, 0.2242536127],
    ],
    # Added 2026-12-04 with the sampler (issue 14), produced the same way.
    "lcm": [
        [-0.6466522048, 0.2874466341, 0.3203203054],
        [-0.7913782964, 0.4235183168, 0.0622817652],
        [1.2031196954, -0.181041013, 0.3819713443],
    ],
}

# Non-default options: first image only.
GOLDEN_OPTIONS = [
    ("ddim", {"eta": 0.5}, [0.7880869794, -0.2829009428, 0.3952198005]),
    ("ddpm", {"variance": "beta"}, [0.6687445357, -0.2817405208, 0.627334014]),
    ("euler_ancestral", {"eta": 0.5, "s_noise": 1.003}, [0.7895416363, -0.2826627008, 0.3958525623]),
    ("euler", {"s_churn": 1.0}, [0.7655507598, -0.2983604376, 0.3816445659]),
    ("heun", {"s_churn": 1.0, "s_tmin": 0.05, "s_tmax": 5.0}, [0.588873061, -0.8957831466, 0.4962734268]),
    ("dpmpp_2m_sde", {"solver_type": "heun", "eta": 0.7}, [1.4325404993, -0.4903242639, 0.7031220368]),
    ("unipc", {"order": 3, "variant": "bh1"}, [0.3526087563, -0.8225767371, 0.1797334618]),
]


def run(name, **options):
    sigmas = karras_sigmas(8, 0.01, 10.0)
    x = initial_noise(SEEDS, (3,)) * sigmas[0]
    return SAMPLERS[name](TOY.denoise, x, sigmas, noise=SeededNoise(SEEDS, (3,)), **options)


def test_every_sampler_is_pinned():
    assert set(GOLDEN) == set(SAMPLERS)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden(name):
    np.testing.assert_allclose(run(name), GOLDEN[name], rtol=0, atol=1e-9)


@pytest.mark.parametrize(("name", "options", "expected"), GOLDEN_OPTIONS)
def test_golden_options(name, options, expected):
    np.testing.assert_allclose(run(name, **options)[0], expected, rtol=0, atol=1e-9)


def test_known_identities():
    # VE coordinates: DDIM(eta=0) is Euler and DDPM's posterior is Euler ancestral with eta=1
    # (Karras et al. 2022, §3); UniP-2 with B(h) = e^h - 1 and no corrector is DPM-Solver++(2M).
    np.testing.assert_allclose(run("ddim"), run("euler"), atol=1e-12)
    np.testing.assert_allclose(run("ddpm"), run("euler_ancestral"), atol=1e-12)
    np.testing.assert_allclose(run("ddim", eta=1.0), run("ddpm"), atol=1e-12)
    np.testing.assert_allclose(run("unipc", corrector=False), run("dpmpp_2m"), atol=1e-12)
    np.testing.assert_allclose(run("dpmpp_2m_sde", eta=0.0), run("dpmpp_2m"), atol=1e-12)
