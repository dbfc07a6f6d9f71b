"""Time one call of each x4 upscaler network in torch on the CPU (docs/MODEL.md, "The upscaler").

    python -m bench.upscaler_net [--size 128] [--threads 2] [--repeats 20]

Prints, per arch, the parameter count and the median and fastest of ``repeats`` calls at batch 1
after three warm-up calls (fp32, no grad). Untrained weights: time does not depend on them."""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the trainer: idle threads sleep


def time_arch(arch: str, size: int, repeats: int) -> dict:
    import torch

    from diffusion.nets.upscaler import UpscalerConfig, build_upscaler

    net = build_upscaler(UpscalerConfig(arch=arch)).eval()
    x = torch.randn(1, 4, size, size)
    sigma, aug = torch.tensor([0.5]), torch.tensor([0.0])

    def call():
        return net(x, sigma, x, aug) if arch == "diffusion" else net(x)

    times = []
    with torch.no_grad():
        for _ in range(3):
            call()
        for _ in range(repeats):
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
    times.sort()
    return {"arch": arch, "size": size, "params": sum(p.numel() for p in net.parameters()),
            "median_ms": round(1000 * times[len(times) // 2], 2), "min_ms": round(1000 * times[0], 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=128, help="HR side (a multiple of 8)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    for arch in ("diffusion", "cnn"):
        print(json.dumps(time_arch(arch, args.size, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
