"""numpy's BLAS on one thread in a service process: set before numpy loads.

numpy's BLAS starts a thread per core for every matrix product, even the tiny ones a service
makes, and its pool threads spin after each product waiting for the next.

- In a worker: the upscaler's bicubic upsample (two products with a 128 x 32 matrix). With the
  job threads and ONNX Runtime's pool already on the cores, the product waits for a pool thread
  that is not running: on the shared 2-core machine the 32² -> 128² upsample took up to 90-112 ms
  a call against 0.07-0.14 ms on one thread (docs/BENCHMARKS.md, "Super-resolution speed").
- In a gateway: the prompt check's product of new clauses with the exemplars (one [clauses, 384]
  x [384, ~2,400] a call). Made from 50 Submit threads at once it took 109 ms a call against
  0.09 ms on one thread, and after the check was batched (one product at a time) the pool thread's
  spinning still took 3.4 s of CPU in a 4.7 s run of Submits, on a 2-core machine whose other
  core serves the Submits (docs/BENCHMARKS.md, "Interactive latency").

Products this small never gain from a second thread. Read once, when numpy loads; a value
already in the environment wins.
"""

from __future__ import annotations

import os

ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def one_blas_thread(environ=os.environ) -> None:
    """Give numpy's BLAS one thread in this process (unless the environment says otherwise)."""
    for name, value in ONE_BLAS_THREAD.items():
        environ.setdefault(name, value)
