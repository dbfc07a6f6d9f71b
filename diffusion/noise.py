"""Seeded, counter-based Gaussian noise: the same seed gives the same image at any batch position.

Every image owns a 64-bit seed.  Its noise is drawn from Philox4x64-10 (Salmon et al. 2011,
"Parallel random numbers: as easy as 1, 2, 3"), a counter-based generator, with the 128-bit key
``seed + (stream << 64)``:

* stream 0 is the initial latent noise;
* stream ``k + 1`` is the noise a stochastic sampler draws at step ``k`` (0-based).

Normals come from the generator's raw 64-bit words by the Box–Muller transform (Box & Muller
1958), not from numpy's ziggurat, whose output numpy does not promise to keep stable between
releases; Philox and Box–Muller are fully specified, so another implementation (a GPU kernel, a
later numpy) reproduces the same numbers up to float rounding of ``log``/``cos``.

Row ``i`` of every array below depends only on ``seeds[i]`` (and the step), never on the batch
size or on the other rows.

**The ``noise`` argument of samplers** is a callable ``noise(k) -> ndarray`` returning standard
normal noise shaped like ``x`` for step ``k``; a sampler calls it at most once per step index.
:class:`SeededNoise` is that callable for a batch of seeds.  When a sampler gets ``noise=None``
it uses :func:`content_noise` of its starting ``x``: seeds taken from a hash of each row of
``x``, so the default is deterministic and still per row (an image does not change when other
rows join the batch).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["NoiseFn", "SeededNoise", "content_noise", "initial_noise", "seeded_normal", "validate_seed"]

NoiseFn = Callable[[int], np.ndarray]

_MAX_SEED = 2**64


def validate_seed(seed: int) -> int:
    """Return ``seed`` as a Python int, checking that it is an unsigned 64-bit value."""
    s = int(seed)
    if not 0 <= s < _MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return s


def seeded_normal(seed: int, stream: int, shape: Sequence[int]) -> np.ndarray:
    """Standard normal float64 array of ``shape`` from Philox keyed by ``(seed, stream)``."""
    key = validate_seed(seed) + (int(stream) << 64)
    size = int(np.prod(shape, dtype=np.int64))
    pairs = (size + 1) // 2
    raw = np.random.Philox(key=key).random_raw(2 * pairs)
    # 53-bit uniforms in the open interval (0, 1): (k + 0.5) / 2^53.
    u = ((raw >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)
    u1, u2 = u[:pairs], u[pairs:]
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = 2.0 * np.pi * u2
    z = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])
    return z[:size].reshape(tuple(shape))


def initial_noise(
    seeds: Sequence[int], shape: Sequence[int], dtype: np.dtype | type = np.float64
) -> np.ndarray:
    """Initial latent noise ``[len(seeds), *shape]``; row i from stream 0 of ``seeds[i]``.

    Samplers start from ``initial_noise(...) * sigmas[0]``.
    """
    shape = tuple(int(d) for d in shape)
    rows = [seeded_normal(s, 0, shape) for s in seeds]
    return np.stack(rows).astype(dtype, copy=False) if rows else np.zeros((0, *shape), dtype=dtype)


@dataclass(frozen=True)
class SeededNoise:
    """The ``noise`` callable of samplers for a batch of seeds: ``noise(k)`` is step k's noise.

    ``shape`` is the per-image shape ``(C, H, W)``; ``noise(k)`` returns ``[len(seeds), *shape]``
    of ``dtype``, row i drawn from stream ``k + 1`` of ``seeds[i]``.
    """

    seeds: tuple[int, ...]
    shape: tuple[int, ...]
    dtype: str = "float64"

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(validate_seed(s) for s in self.seeds))
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    def __call__(self, k: int) -> np.ndarray:
        if k < 0:
            raise ValueError("step index must be >= 0")
        rows = [seeded_normal(s, int(k) + 1, self.shape) for s in self.seeds]
        return np.stack(rows).astype(self.dtype, copy=False)

    def row(self, i: int) -> SeededNoise:
        """The noise source of image ``i`` alone."""
        return SeededNoise((self.seeds[i],), self.shape, self.dtype)


def _row_seed(row: np.ndarray) -> int:
    data = np.ascontiguousarray(row, dtype=np.float64).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, person=b"atelier-noise").digest(), "little")


def content_noise(x: np.ndarray) -> SeededNoise:
    """Default sampler noise: one seed per row, hashed (BLAKE2b) from that row of ``x``.

    Deterministic and batch-invariant like :class:`SeededNoise`, for callers that did not pass
    explicit seeds; serving code should pass ``SeededNoise(seeds, shape)`` instead.
    """
    x = np.asarray(x)
    return SeededNoise(tuple(_row_seed(r) for r in x), x.shape[1:], str(x.dtype))
