"""Seeded, counter-based Gaussian noise: the same seed gives the same image at any batch position.

Every image owns a 64-bit seed.  Its noise comes from Philox4x32-10 (Salmon et al. 2011,
"Parallel random numbers: as easy as 1, 2, 3"), the counter-based generator of Random123,
cuRAND and JAX, implemented here in vectorised numpy integer arithmetic and checked against
Random123's known-answer vectors.  For image ``i`` and stream ``s``:

* key = (low 32 bits, high 32 bits) of ``seeds[i]``;
* counter = (block index low, block index high, ``s`` low, ``s`` high), block j giving elements
  2j and 2j+1 of the image's flattened array;
* stream 0 is the initial latent noise, stream ``k + 1`` the noise a stochastic sampler draws at
  step ``k`` (0-based).

Each block's four 32-bit words make two 53-bit uniforms in (0, 1) and, by the Box–Muller
transform (Box & Muller 1958), two standard normals.  Only integer arithmetic and IEEE ``log``,
``sqrt``, ``cos``, ``sin`` are involved, so any machine (or a GPU kernel) reproduces the numbers
up to the last-bit rounding of those functions.  Row ``i`` of every array below depends only on
``seeds[i]`` (and the step), never on the batch size or on the other rows.

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

__all__ = [
    "NoiseFn",
    "SeededNoise",
    "content_noise",
    "initial_noise",
    "normal_rows",
    "philox4x32",
    "validate_seed",
]

NoiseFn = Callable[[int], np.ndarray]

_MAX_SEED = 2**64


def validate_seed(seed: int) -> int:
    """Return ``seed`` as a Python int, checking that it is an unsigned 64-bit value."""
    s = int(seed)
    if not 0 <= s < _MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return s


_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)  # Philox4x32 multipliers
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)  # Weyl key increments
_LO32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)


def philox4x32(counter: Sequence[np.ndarray], key: Sequence[np.ndarray], rounds: int = 10) -> list[np.ndarray]:
    """Philox4x32-R block function (Salmon et al. 2011, §3.3) on broadcastable arrays.

    ``counter`` is four and ``key`` two arrays of 32-bit values (held in uint64); returns the four
    output words.  Each round multiplies words 0 and 2 by the Philox constants, then mixes the
    high halves with the other words and the key; the key is bumped by the Weyl constants.
    """
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in counter)
    k0, k1 = (np.asarray(k, dtype=np.uint64) for k in key)
    for _ in range(rounds):
        p0, p1 = _M0 * c0, _M1 * c2  # 32 x 32 -> 64-bit products, exact in uint64
        c0, c1, c2, c3 = (p1 >> _S32) ^ c1 ^ k0, p1 & _LO32, (p0 >> _S32) ^ c3 ^ k1, p0 & _LO32
        k0, k1 = (k0 + _W0) & _LO32, (k1 + _W1) & _LO32
    return [c0, c1, c2, c3]


def _uniform53(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """53-bit uniform in the open interval (0, 1) from two 32-bit words."""
    bits = (hi >> np.uint64(5)) * np.uint64(1 << 26) + (lo >> np.uint64(6))
    return (bits.astype(np.float64) + 0.5) * (1.0 / 9007199254740992.0)


def normal_rows(seeds: Sequence[int], stream: int, shape: Sequence[int]) -> np.ndarray:
    """Standard normal float64 ``[len(seeds), *shape]``; row i from (seeds[i], stream) only."""
    shape = tuple(int(d) for d in shape)
    size = int(np.prod(shape, dtype=np.int64))
    seed_arr = np.array([validate_seed(s) for s in seeds], dtype=np.uint64).reshape(-1, 1)
    stream = int(stream)
    blocks = np.arange((size + 1) // 2, dtype=np.uint64).reshape(1, -1)
    words = philox4x32(
        (blocks & _LO32, blocks >> _S32, np.uint64(stream & 0xFFFFFFFF), np.uint64(stream >> 32)),
        (seed_arr & _LO32, seed_arr >> _S32),
    )
    u1, u2 = _uniform53(words[0], words[1]), _uniform53(words[2], words[3])
    radius = np.sqrt(-2.0 * np.log(u1))
    angle = (2.0 * np.pi) * u2
    z = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)  # [B, blocks, 2]
    return z.reshape(len(seed_arr), -1)[:, :size].reshape(len(seed_arr), *shape)


def initial_noise(seeds: Sequence[int], shape: Sequence[int], dtype: np.dtype | type = np.float64) -> np.ndarray:
    """Initial latent noise ``[len(seeds), *shape]``; row i from stream 0 of ``seeds[i]``.

    Samplers start from ``initial_noise(...) * sigmas[0]``.
    """
    return normal_rows(seeds, 0, shape).astype(dtype, copy=False)


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
        return normal_rows(self.seeds, int(k) + 1, self.shape).astype(self.dtype, copy=False)

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
