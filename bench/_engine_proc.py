"""One engine, measured in a fresh process: `python -m bench._engine_proc ENGINE ...` prints one JSON line.

bench/engines.py starts this once per engine so that neither engine inherits the other's
thread pools, allocator state or warmed caches. Engines:

  torch       PyTorch eager (`torch.inference_mode`) on the checkpoint's weights
  ort-plain   ONNX Runtime on the exported `unet.onnx` with default session options: what a
              user gets from the file alone
  ort-worker  the worker's own runtime (services/worker/onnx_runtime.py): the variant, session
              options and shape handling that serve jobs
  gemm        no network: the float32 matmul rate (torch and numpy, best of both), the
              roofline's denominator, measured under the same thread count and neighbours

Denormals are flushed in every engine (torch.set_flush_denormal; ORT's set_denormal_as_zero):
on this CPU a denormal-heavy layer is many times slower, which would measure the inputs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from diffusion.samplers import SAMPLERS
from diffusion.schedules import karras_sigmas

SAMPLER = "dpmpp_2m"   # the shipped default: one network call per step


def inputs(batch: int, shape: tuple[int, ...], tokens: int, dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The same random UNet inputs for every engine (row i is the same at any batch size)."""
    rng = np.random.default_rng(seed)
    rows = max(batch, 1)
    lengths = rng.integers(1, tokens + 1, rows)
    return {
        "sample": (rng.standard_normal((rows, *shape)) * 2.0).astype(np.float32)[:batch],
        "sigma": np.geomspace(0.05, 40.0, rows)[:batch].astype(np.float32),
        "encoder_hidden_states": rng.standard_normal((rows, tokens, dim)).astype(np.float32)[:batch],
        "encoder_attention_mask": (np.arange(tokens)[None, :] < lengths[:, None]).astype(np.float32)[:batch],
        "style": rng.integers(0, 2, rows).astype(np.int64)[:batch],
    }


def _timings(fn, repeats: int, budget_s: float) -> list[float]:
    fn()
    fn()   # first calls allocate and pick kernels
    out: list[float] = []
    started = time.perf_counter()
    while len(out) < repeats and (len(out) < 3 or time.perf_counter() - started < budget_s):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _torch_engine(args):
    import torch

    from bench._models import load_denoiser

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    net = load_denoiser(Path(args.checkpoint))

    def call(feeds):
        t = {k: torch.from_numpy(v) for k, v in feeds.items()}
        with torch.inference_mode():
            out = net(t["sample"], t["sigma"], t["encoder_hidden_states"], t["encoder_attention_mask"], t["style"])
        return out.numpy()

    return call


def _ort_plain_engine(args):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.set_denormal_as_zero", "1")
    folder = Path(args.repository) / args.model / "1"
    session = ort.InferenceSession(str(folder / "unet.onnx"), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return lambda feeds: session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def _ort_worker_engine(args):
    from services.common.settings import Settings
    from services.worker.onnx_runtime import load_runtime

    settings = Settings.from_env({}, model_repository=Path(args.repository), onnx_intra_op_threads=args.threads,
                                 execution_providers="cpu")
    runtime = load_runtime(settings, args.model)
    denoise = runtime.denoiser(False)
    cond_names = runtime.manifest.unet.cond_inputs

    def call(feeds):
        return denoise(feeds["sample"], feeds["sigma"], {k: feeds[k] for k in cond_names})

    return call


def gemm_rate(threads: int, n: int = 2048, seconds: float = 1.5) -> dict[str, float]:
    """Best float32 GEMM rate (FLOP/s) of torch and numpy at this thread count."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    rates = {}
    for name, mm in (("torch", lambda: a @ b), ("numpy", lambda: a.numpy() @ b.numpy())):
        times = _timings(mm, 50, seconds)
        rates[name] = 2.0 * n**3 / min(times)
    return rates


def measure(args) -> dict:
    if args.engine == "gemm":
        return {"gemm_flops": gemm_rate(args.threads)}
    call = {"torch": _torch_engine, "ort-plain": _ort_plain_engine, "ort-worker": _ort_worker_engine}[args.engine](args)
    shape, tokens, dim = tuple(args.shape), args.tokens, args.dim
    result: dict = {"latency_s": {}, "latency_min_s": {}, "calls": {}}
    for batch in args.batches:
        feeds = inputs(batch, shape, tokens, dim)
        times = _timings(lambda f=feeds: call(f), args.repeats, args.budget)
        result["latency_s"][str(batch)] = statistics.median(times)
        result["latency_min_s"][str(batch)] = min(times)
        result["calls"][str(batch)] = len(times)
    # A whole sample: the sampler's own numpy work and per-step conversions count, as in a job.
    sigmas = karras_sigmas(args.steps, 0.002, 80.0)
    result["images_per_s"] = {}
    for batch in args.sample_batches:
        feeds = inputs(batch, shape, tokens, dim, seed=1)
        cond = {k: v for k, v in feeds.items() if k not in ("sample", "sigma")}

        def denoise(x, sigma, cond=cond):
            s = np.array(np.broadcast_to(np.asarray(sigma, np.float32), (x.shape[0],)))
            return call({"sample": np.array(x, dtype=np.float32), "sigma": s, **cond})

        x = feeds["sample"] * np.float32(sigmas[0])
        t0 = time.perf_counter()
        out = SAMPLERS[SAMPLER](denoise, x, sigmas)
        result["images_per_s"][str(batch)] = batch / (time.perf_counter() - t0)
        result.setdefault("finite", True)
        result["finite"] = result["finite"] and bool(np.isfinite(out).all())
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("engine", choices=("torch", "ort-plain", "ort-worker", "gemm"))
    p.add_argument("--checkpoint", help="Atelier checkpoint folder (torch)")
    p.add_argument("--repository", help="model repository root (ORT engines)")
    p.add_argument("--model", help="model name in the repository")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--sample-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=20, help="most timed calls per batch size")
    p.add_argument("--budget", type=float, default=4.0, help="seconds per batch size, after at least 3 calls")
    p.add_argument("--shape", type=int, nargs=3, default=[4, 8, 8], help="latent C H W")
    p.add_argument("--tokens", type=int, default=24)
    p.add_argument("--dim", type=int, default=384)
    args = p.parse_args(argv)
    print(json.dumps(measure(args)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
