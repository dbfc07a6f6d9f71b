"""Closed-form toy problems: Gaussian mixtures, whose ideal denoiser is known exactly.

For data x0 ~ sum_k w_k N(mu_k, S_k) and x = x0 + sigma * eps, the marginal is
sum_k w_k N(mu_k, S_k + sigma² I) and the ideal denoiser (the posterior mean, EDM eq. 2-3) is

    D(x, sigma) = sum_k p(k | x) [mu_k + S_k (S_k + sigma² I)^{-1} (x - mu_k)].

For a single Gaussian the probability-flow ODE is solved exactly in the eigenbasis of S
(eigenvalue l): the component y = u·(x - mu) scales as sqrt((l + sigma²) / (l + sigma_0²)).
Tests and ``bench/samplers.py`` use these as ground truth.  Arrays may be ``[B, D]`` or
``[B, C, H, W]`` (flattened to D = C*H*W).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GaussianMixture", "ring_mixture"]


@dataclass(frozen=True)
class GaussianMixture:
    """Mixture with weights ``[K]``, means ``[K, D]`` and covariances ``[K, D, D]`` (float64)."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        mu = np.atleast_2d(np.asarray(self.means, dtype=np.float64))
        cov = np.asarray(self.covs, dtype=np.float64).reshape(mu.shape[0], mu.shape[1], mu.shape[1])
        object.__setattr__(self, "weights", w / w.sum())
        object.__setattr__(self, "means", mu)
        object.__setattr__(self, "covs", cov)
        lam, u = np.linalg.eigh(cov)
        object.__setattr__(self, "_eigvals", np.maximum(lam, 0.0))
        object.__setattr__(self, "_eigvecs", u)

    @classmethod
    def gaussian(cls, mean: np.ndarray, cov: np.ndarray) -> GaussianMixture:
        mean = np.asarray(mean, dtype=np.float64)
        return cls(np.ones(1), mean[None], np.asarray(cov, dtype=np.float64)[None])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def mean(self) -> np.ndarray:
        return self.weights @ self.means

    def cov(self) -> np.ndarray:
        m = self.mean()
        centred = self.means - m
        return np.einsum("k,kij->ij", self.weights, self.covs) + np.einsum(
            "k,ki,kj->ij", self.weights, centred, centred
        )

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` exact draws ``[n, D]``."""
        k = rng.choice(self.weights.size, size=n, p=self.weights)
        z = rng.standard_normal((n, self.dim))
        lam, u = self._eigvals[k], self._eigvecs[k]
        return self.means[k] + np.einsum("nij,nj->ni", u, np.sqrt(lam) * z)

    def _flat(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return x.reshape(x.shape[0], -1)

    def denoise(self, x: np.ndarray, sigma: np.ndarray, cond: object = None) -> np.ndarray:
        """The ideal denoiser E[x0 | x, sigma]; ``sigma`` scalar or ``[B]``; ``cond`` ignored."""
        del cond
        shape, xf = np.shape(x), self._flat(x)
        s2 = np.broadcast_to(np.asarray(sigma, dtype=np.float64) ** 2, (xf.shape[0],))
        lam, u = self._eigvals, self._eigvecs  # [K, D], [K, D, D]
        y = (xf[None] - self.means[:, None, :]) @ u  # [K, B, D], coordinates in each eigenbasis
        var = lam[:, None, :] + s2[None, :, None]  # [K, B, D]
        log_p = -0.5 * np.sum(y * y / var + np.log(2 * np.pi * var), axis=-1) + np.log(self.weights)[:, None]
        log_p -= log_p.max(axis=0, keepdims=True)
        resp = np.exp(log_p)
        resp /= resp.sum(axis=0, keepdims=True)  # p(k | x), [K, B]
        post = ((lam[:, None, :] / var) * y) @ np.swapaxes(u, 1, 2) + self.means[:, None, :]  # E[x0 | x, k]
        out = np.einsum("kb,kbi->bi", resp, post)
        return out.reshape(shape)

    def eps(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """The ideal noise prediction (x - D(x, sigma)) / sigma in VE coordinates."""
        s = np.asarray(sigma, dtype=np.float64).reshape(-1, *([1] * (np.ndim(x) - 1)))
        return (np.asarray(x, dtype=np.float64) - self.denoise(x, sigma)) / s

    def ode_solution(self, x: np.ndarray, sigma_from: float, sigma_to: float) -> np.ndarray:
        """Exact probability-flow ODE map from sigma_from to sigma_to (single Gaussian only)."""
        if self.weights.size != 1:
            raise ValueError("the ODE has a closed form only for a single Gaussian")
        shape, xf = np.shape(x), self._flat(x)
        lam, u, mu = self._eigvals[0], self._eigvecs[0], self.means[0]
        y = (xf - mu) @ u
        y = y * np.sqrt((lam + sigma_to**2) / (lam + sigma_from**2))
        return (y @ u.T + mu).reshape(shape)


def ring_mixture(k: int = 8, radius: float = 1.0, std: float = 0.05, dim: int = 2) -> GaussianMixture:
    """``k`` isotropic Gaussians of ``std`` evenly spaced on a circle of ``radius`` (first two axes)."""
    angles = 2 * np.pi * np.arange(k) / k
    means = np.zeros((k, dim))
    means[:, 0], means[:, 1] = radius * np.cos(angles), radius * np.sin(angles)
    covs = np.broadcast_to(np.eye(dim) * std**2, (k, dim, dim)).copy()
    return GaussianMixture(np.ones(k), means, covs)
