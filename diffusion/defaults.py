"""The library's fallback defaults, in one place.

A model's manifest states its own defaults (``defaults`` in manifest.json: sampler, steps,
guidance); these are what a model that states none gets, and what the toolkit's commands start
from. Importing nothing, they can be read by the gateway and the command line alike.
"""

# Chosen by bench/samplers.py (docs/BENCHMARKS.md, "Samplers"): UniPC reaches DDIM's 50-step
# quality in the fewest denoiser evaluations.
DEFAULT_SAMPLER = "unipc"

DEFAULT_STEPS = 20

# The sweep of atelier-emoji/1 (guidance 2, 3, 5, 7; docs/BENCHMARKS.md) had its best FID and
# style adherence at 5.
DEFAULT_GUIDANCE = 5.0
