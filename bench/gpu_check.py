"""GPU check of the export stage: TensorRT / CUDA / CPU parity and timings on one model.

Run on a machine with an NVIDIA GPU (bench/gpu_check.sh wraps it with driver facts):

    python -m bench.gpu_check                       # exports a random ~35 M-parameter Atelier model
    python -m bench.gpu_check --model atelier-emoji # or a model of ./models

For each usable provider set (TensorRT+CUDA, CUDA alone, CPU) and file variant, it loads the
version through the worker runtime (hash-checked), and reports: load seconds (TensorRT: the
engine build, then a second load from the engine cache), the x0 error against the CPU fp32
run on the same inputs (max abs, cosine), UNet latency at batch 1 and 8, decoder latency at
batch 1, and images/s of a 20-step DPM++ 2M sample at batch 8. Ends with one JSON line
(bench/report.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import finish


def _export_random(root: Path, channels: tuple[int, ...]) -> tuple[Path, str]:
    """A random-weight Atelier checkpoint of the given UNet width, exported with --fp16."""
    import json

    import torch
    from safetensors.torch import save_file

    from diffusion.nets.config import LatentConfig, ModelConfig, UNetConfig, VAEConfig
    from diffusion.nets.unet import UNet
    from diffusion.nets.vae import VAE
    from export.pipeline import ExportOptions, export_model

    ckpt = root / "ckpt"
    ckpt.mkdir(parents=True)
    unet_cfg = UNetConfig(channels=channels, num_res_blocks=2)
    cfg = ModelConfig(vae=VAEConfig().to_dict(), unet=unet_cfg.to_dict(),
                      latent=LatentConfig(image_size=64, latent_size=16).to_dict())
    (ckpt / "config.json").write_text(json.dumps(cfg.to_dict()))
    torch.manual_seed(0)
    for name, net in (("vae", VAE(VAEConfig())), ("unet", UNet(unet_cfg))):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        save_file(net.state_dict(), str(ckpt / f"{name}.safetensors"))
    params = sum(p.numel() for p in UNet(unet_cfg).parameters())
    print(f"exporting a random Atelier model, UNet {params / 1e6:.1f} M parameters", flush=True)
    export_model(ckpt, ExportOptions(name="gpu-check", version="1", out=root / "models", fp16=True, optimize=True),
                 progress=lambda m: print("  " + m, flush=True))
    return root / "models", "gpu-check"


def _time(fn, repeats: int = 20) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _measure(repo: Path, model: str, providers: list[str], variant: str, reference: np.ndarray | None):
    from diffusion.denoisers import bind
    from diffusion.samplers import SAMPLERS
    from services.common.settings import Settings
    from services.worker.onnx_runtime import load_runtime

    settings = Settings.from_env(model_repository=repo, onnx_variant=variant,
                                 trt_engine_cache=Path(tempfile.gettempdir()) / "atelier-trt")
    start = time.perf_counter()
    rt = load_runtime(settings, model, providers=providers)
    first_load = time.perf_counter() - start
    start = time.perf_counter()
    rt = load_runtime(settings, model, providers=providers)   # engines from the cache now
    cached_load = time.perf_counter() - start
    rng = np.random.default_rng(0)
    shape = rt.info.latent_shape(rt.info.width, rt.info.height)
    x = rng.standard_normal((8, *shape)).astype(np.float32) * 3
    sigma = np.geomspace(0.05, 40, 8)
    cond = rt.encode_text(["a red heart"] * 8, [])
    x0 = rt.denoise(x, sigma, cond)
    row = {"providers": providers[0], "variant": variant, "load_s": round(first_load, 2),
           "cached_load_s": round(cached_load, 2)}
    if reference is not None:
        a, b = x0.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
        row["max_abs_vs_cpu"] = float(np.abs(a - b).max())
        row["cosine_vs_cpu"] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    for batch in (1, 8):
        c = {k: v[:batch] for k, v in cond.items()}
        row[f"unet_ms_b{batch}"] = round(1e3 * _time(lambda c=c, b=batch: rt.denoise(x[:b], sigma[:b], c)), 3)
    row["decode_ms_b1"] = round(1e3 * _time(lambda: rt.decode(x0[:1])), 3)
    sigmas = rt.sigmas(20)
    start = time.perf_counter()
    SAMPLERS["dpmpp_2m"](bind(rt.denoise, cond), x * sigmas[0], sigmas)
    row["images_per_s_20_steps_b8"] = round(8 / (time.perf_counter() - start), 2)
    print(row, flush=True)
    return row, x0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model of --repository to use (default: export a random one)")
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--channels", default="128,256,256", help="UNet widths of the random model (~35 M params)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from repository import providers as prov

    report = prov.detect()
    print("usable providers:", report.usable, "not usable:", report.reasons, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            repo, model = args.repository, args.model
        else:
            repo, model = _export_random(Path(tmp), tuple(int(c) for c in args.channels.split(",")))
        rows = []
        reference_row, reference = _measure(repo, model, [prov.CPU], "default", None)
        rows.append(reference_row)
        plans = [([prov.CPU], "optimized")]
        if prov.CUDA in report.usable:
            plans += [([prov.CUDA, prov.CPU], "default"), ([prov.CUDA, prov.CPU], "fp16")]
        if prov.TENSORRT in report.usable:
            plans += [([prov.TENSORRT, prov.CUDA, prov.CPU], "default")]
        for providers, variant in plans:
            try:
                rows.append(_measure(repo, model, providers, variant, reference)[0])
            except Exception as exc:    # one provider failing must not hide the others' figures
                print(f"{providers[0]} {variant}: FAILED {exc}", file=sys.stderr, flush=True)
                rows.append({"providers": providers[0], "variant": variant, "error": str(exc)[:500]})
    finish("gpu_check", {"usable": list(report.usable), "not_usable": report.reasons, "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
