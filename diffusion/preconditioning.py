"""EDM's preconditioning scalings (Karras et al. 2022, Table 1), for numpy and torch alike.

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))

    c_skip = sigma_data² / (sigma² + sigma_data²)     c_out = sigma sigma_data / sqrt(sigma² + sigma_data²)
    c_in   = 1 / sqrt(sigma² + sigma_data²)            c_noise = ln(sigma) / 4

The serving adapter (:class:`diffusion.denoisers.EDMDenoiser`, numpy) and the trained network's
wrapper (:class:`diffusion.nets.edm.EDMDenoiser`, torch, exported to ONNX) both take their
scalings from here, so the two cannot drift apart. The arithmetic is written with operators
that numpy arrays and torch tensors share; ``sqrt`` and ``log`` use the tensor's own method when
it has one, so this module needs no torch and a torch caller keeps its autograd graph.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["edm_noise_label", "edm_scalings"]


def _sqrt(a: Any) -> Any:
    return a.sqrt() if hasattr(a, "sqrt") else np.sqrt(a)


def _log(a: Any) -> Any:
    return a.log() if hasattr(a, "log") else np.log(a)


def edm_scalings(sigma: Any, sigma_data: float) -> tuple[Any, Any, Any]:
    """(c_skip, c_out, c_in) for ``sigma`` of any shape (shape it to broadcast against ``x`` first)."""
    var = sigma**2 + sigma_data**2
    norm = _sqrt(var)
    return sigma_data**2 / var, sigma * sigma_data / norm, 1.0 / norm


def edm_noise_label(sigma: Any) -> Any:
    """c_noise = ln(sigma) / 4: what the network is told about the noise level."""
    return _log(sigma) / 4.0
