"""Sampler quality against denoiser evaluations (NFE) on a Gaussian-mixture toy.

    python -m bench.samplers [--samples 12000] [--quick]

Data: a mixture of 6 anisotropic Gaussians in 8-D (fixed by seed 0, unit-scale like the
latents of the default model), whose ideal denoiser is exact (:mod:`diffusion.toy`), so every
error is the sampler's.  Each sampler runs the same schedule, log-SNR-uniform ("exponential")
sigmas over the range of the default model's VP scaled-linear training schedule (0.029 to 14.6),
at a range of step counts, all from the same seeded initial noise.  DDIM at 50 NFE is also run
on the Karras, "trailing" and "linspace" schedules, and the best of those is the bar to clear.
Quality is the sliced Wasserstein-2 distance to the true distribution (128 fixed random
directions; the true quantiles come from 400,000 exact draws).  ``floor`` is the same distance
for an exact sample of the same size.

Prints progress, writes docs/samplers.png, and ends with one JSON line (bench.report).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from bench.report import finish
from diffusion.defaults import DEFAULT_SAMPLER
from diffusion.noise import SeededNoise, initial_noise
from diffusion.sampler_catalog import nfe, spec
from diffusion.samplers import SAMPLERS
from diffusion.schedules import (
    alphas_cumprod_from_betas,
    betas_scaled_linear,
    exponential_sigmas,
    karras_sigmas,
    timestep_sigmas,
    vp_sigmas,
)
from diffusion.toy import GaussianMixture

NFE_GRID = (4, 6, 8, 10, 12, 15, 20, 30, 50)
TRAIN_SIGMAS = vp_sigmas(alphas_cumprod_from_betas(betas_scaled_linear()))
SIGMA_MIN, SIGMA_MAX = float(TRAIN_SIGMAS[0]), float(TRAIN_SIGMAS[-1])
PLOT = Path(__file__).resolve().parent.parent / "docs" / "samplers.png"


class SlicedW2:
    """Sliced Wasserstein-2 to a fixed reference, via quantiles along fixed directions."""

    def __init__(self, reference: np.ndarray, directions: int = 128, seed: int = 0):
        theta = np.random.default_rng(seed).standard_normal((reference.shape[1], directions))
        self.theta = theta / np.linalg.norm(theta, axis=0, keepdims=True)
        self.ref_sorted = np.sort(reference @ self.theta, axis=0)

    def __call__(self, x: np.ndarray) -> float:
        proj = np.sort(x @ self.theta, axis=0)
        levels = (np.arange(x.shape[0]) + 0.5) / x.shape[0]
        idx = np.minimum((levels * self.ref_sorted.shape[0]).astype(int), self.ref_sorted.shape[0] - 1)
        return float(np.sqrt(np.mean((proj - self.ref_sorted[idx]) ** 2)))


def benchmark_mixture(components: int = 6, dim: int = 8, seed: int = 0) -> GaussianMixture:
    """Equal-weight mixture, means ~ N(0, I), covariances A A^T with A ~ N(0, 0.25²) (+0.01 I)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((components, dim, dim)) * 0.25
    covs = a @ a.transpose(0, 2, 1) + 0.01 * np.eye(dim)
    return GaussianMixture(np.ones(components), rng.standard_normal((components, dim)), covs)


def schedule(steps: int) -> np.ndarray:
    return exponential_sigmas(steps, SIGMA_MIN, SIGMA_MAX)


DDIM_SCHEDULES = {
    "exponential": schedule,
    "karras": lambda steps: karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX),
    "trailing": lambda steps: timestep_sigmas(TRAIN_SIGMAS, steps, "trailing"),
    "linspace": lambda steps: timestep_sigmas(TRAIN_SIGMAS, steps, "linspace"),
}


def steps_for(name: str, target_nfe: int) -> int:
    """Largest step count whose NFE does not exceed the target."""
    return (target_nfe + 1) // 2 if name == "heun" else target_nfe


def nfe_to_reach(curve: dict[int, float], level: float) -> float | None:
    """Smallest NFE (log-interpolated between measured points) at which the curve is <= level."""
    points = sorted(curve.items())
    for (n0, d0), (n1, d1) in zip(points, points[1:], strict=False):
        if d0 <= level:
            return float(n0)
        if d1 <= level:
            frac = (math.log(d0) - math.log(level)) / (math.log(d0) - math.log(d1))
            return float(math.exp(math.log(n0) + frac * (math.log(n1) - math.log(n0))))
    return float(points[-1][0]) if points and points[-1][1] <= level else None


def plot(curves: dict[str, dict[int, float]], floor: float, ddim50: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.2))
    markers = dict(zip(curves, "os^vDPX*", strict=False))
    for index, (name, curve) in enumerate(curves.items()):
        n, d = zip(*sorted(curve.items()), strict=True)
        default = name == DEFAULT_SAMPLER
        # DDIM = Euler and DDPM = Euler ancestral in VE form: distinct markers keep both visible.
        ax.plot(
            n,
            d,
            marker=markers[name],
            ms=7 - index * 0.5,
            lw=2.6 if default else 1.2,
            ls="-" if default else "--",
            color=f"C{index}",
            label=name + (" (default)" if default else ""),
        )
    ax.axhline(ddim50, color="grey", ls=":", label="DDIM at 50 NFE (best schedule)")
    ax.axhline(floor, color="black", ls="--", lw=0.8, label="exact-sample floor")
    ax.axvline(10, color="grey", lw=0.5)
    ax.set(xscale="log", yscale="log", xlabel="denoiser evaluations (NFE)", ylabel="sliced W2 to data")
    ax.set_xticks(NFE_GRID, [str(v) for v in NFE_GRID])
    ax.minorticks_off()
    ax.set_title("Samplers on a 6-Gaussian mixture in 8-D (exact denoiser)")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=12000)
    parser.add_argument("--quick", action="store_true", help="fewer samples and NFE points (smoke run)")
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args(argv)
    n = 2000 if args.quick else args.samples
    grid = (4, 10, 50) if args.quick else NFE_GRID
    if 50 not in grid:
        raise ValueError("the NFE grid must contain 50 (the DDIM reference)")

    toy = benchmark_mixture()
    started = time.perf_counter()
    metric = SlicedW2(toy.sample(400_000, np.random.default_rng(12345)))
    floor = metric(toy.sample(n, np.random.default_rng(777)))
    seeds = list(range(1, n + 1))
    z = initial_noise(seeds, (toy.dim,))
    noise = SeededNoise(seeds, (toy.dim,))
    print(f"[samplers] {n} samples, 8-D 6-Gaussian mixture, floor (exact sample) SW2 = {floor:.4f}", flush=True)

    curves: dict[str, dict[int, float]] = {}
    for name, sample in SAMPLERS.items():
        if spec(name).consistency:  # it needs a consistency model's denoiser, not this exact one
            continue
        curves[name] = {}
        t0 = time.perf_counter()
        for target in grid:
            steps = steps_for(name, target)
            sigmas = schedule(steps)
            x = sample(toy.denoise, z * sigmas[0], sigmas, noise=noise)
            curves[name][nfe(name, steps)] = metric(x)
        row = "  ".join(f"{k}:{v:.4f}" for k, v in curves[name].items())
        print(f"[samplers] {name:16s} {time.perf_counter() - t0:5.1f}s  NFE:SW2  {row}", flush=True)

    ddim50_by_schedule = {}
    for label, make in DDIM_SCHEDULES.items():
        sigmas = make(50)
        ddim50_by_schedule[label] = metric(SAMPLERS["ddim"](toy.denoise, z * sigmas[0], sigmas))
    print("[samplers] DDIM at 50 NFE by schedule: " + "  ".join(f"{k}:{v:.4f}" for k, v in ddim50_by_schedule.items()))
    ddim50 = min(ddim50_by_schedule.values())
    reach = {name: nfe_to_reach(c, ddim50) for name, c in curves.items()}
    at10 = {name: min((d for k, d in c.items() if k <= 10), default=None) for name, c in curves.items()}
    best10 = min((d, name) for name, d in at10.items() if d is not None)[1]
    print(f"[samplers] DDIM at 50 NFE, best schedule: SW2 = {ddim50:.4f}; NFE each sampler needs to match it:")
    for name, r in reach.items():
        print(f"[samplers]   {name:16s} {'never (in grid)' if r is None else f'{r:.1f}'}", flush=True)
    print(f"[samplers] best at <= 10 NFE: {best10} ({at10[best10]:.4f}); default: {DEFAULT_SAMPLER}", flush=True)

    plot(curves, floor, ddim50, args.plot)
    print(f"[samplers] plot: {args.plot}", flush=True)
    goal = reach[DEFAULT_SAMPLER] is not None and reach[DEFAULT_SAMPLER] <= 10
    figures = {
        "samples": n,
        "schedule": f"exponential, sigma {SIGMA_MAX:.4f} -> {SIGMA_MIN:.5f}",
        "sliced_w2": {name: {str(k): round(v, 5) for k, v in c.items()} for name, c in curves.items()},
        "floor_sliced_w2": round(floor, 5),
        "ddim_50_sliced_w2": round(ddim50, 5),
        "ddim_50_by_schedule": {k: round(v, 5) for k, v in ddim50_by_schedule.items()},
        "nfe_to_match_ddim_50": {k: None if v is None else round(v, 1) for k, v in reach.items()},
        "best_at_10_nfe": best10,
        "default_sampler": DEFAULT_SAMPLER,
        "goal_default_le_10_nfe_matches_ddim_50": goal,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return finish("samplers", figures)


if __name__ == "__main__":
    main(sys.argv[1:])
