"""PyTorch eager vs ONNX Runtime (CPU) on the same UNet weights, and the roofline figure.

    python -m bench.engines                  # default model + a ~35 M-parameter widening, 1 and 2 threads
    python -m bench.engines --quick          # tiny model, seconds (what tests/bench runs)

For the default model's architecture (bench/_models.py says where it comes from) and for the
same UNet widened to ~35 M parameters, it writes a checkpoint, exports it with the project's
exporter, then starts one fresh process per engine (bench/_engine_proc.py: torch eager, ORT on
the plain file, ORT through the worker's runtime) and one for the float32 GEMM rate. Per engine:
UNet latency per call at each batch size, and images/s of a 20-step DPM++ 2M sample. Rounds
alternate the engines' order and each figure keeps its best round, because neighbours on a
shared machine only ever add time.

Roofline: the UNet's FLOPs (torch.utils.flop_counter, matmul/conv FLOPs) per second under the
worker's ORT runtime divided by the best float32 GEMM rate measured at the same thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import _models
from bench.report import finish

ENGINES = ("torch", "ort-plain", "ort-worker")
GOAL_SPEEDUP_B1 = 2.5
GOAL_ROOFLINE = 0.6


def _log(message: str) -> None:
    print(message, flush=True)


def count_flops(checkpoint: Path, batches: list[int], shape, tokens: int, dim: int) -> dict[str, float]:
    """Matmul and convolution FLOPs of one UNet call (the EDM wrapper's elementwise ops are noise)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench._engine_proc import inputs

    net = _models.load_denoiser(checkpoint)
    out = {}
    for batch in batches:
        feeds = {k: torch.from_numpy(v) for k, v in inputs(batch, shape, tokens, dim).items()}
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            net(feeds["sample"], feeds["sigma"], feeds["encoder_hidden_states"], feeds["encoder_attention_mask"],
                feeds["style"])
        out[str(batch)] = float(counter.get_total_flops())
    return out


def run_engine(engine: str, model: dict, threads: int, opts: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "bench._engine_proc", engine, "--threads", str(threads)]
    if engine != "gemm":
        cmd += ["--checkpoint", str(model["checkpoint"]), "--repository", str(model["repository"]),
                "--model", model["name"], "--batches", *map(str, opts.batches),
                "--sample-batches", *map(str, opts.sample_batches), "--steps", str(opts.steps),
                "--repeats", str(opts.repeats), "--budget", str(opts.budget),
                "--shape", *map(str, model["shape"]), "--tokens", str(model["tokens"]), "--dim", str(model["dim"])]
    # numpy's BLAS reads its thread count from the environment at import (torch.set_num_threads
    # does not reach it): without these the "1-thread" GEMM rate ran on both cores.
    threads_env = {k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    env = dict(os.environ, PYTHONWARNINGS="ignore", HF_HUB_OFFLINE="1", **threads_env)
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=opts.process_timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} process failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


def best_of(rounds: list[dict]) -> dict:
    """Lowest median latency and highest images/s over rounds."""
    out: dict = {"latency_s": {}, "latency_min_s": {}, "images_per_s": {},
                 "finite": all(r.get("finite", True) for r in rounds)}
    for key in rounds[0]["latency_s"]:
        out["latency_s"][key] = min(r["latency_s"][key] for r in rounds)
        out["latency_min_s"][key] = min(r["latency_min_s"][key] for r in rounds)
    for key in rounds[0]["images_per_s"]:
        out["images_per_s"][key] = max(r["images_per_s"][key] for r in rounds)
    return out


def prepare(root: Path, opts: argparse.Namespace) -> list[dict]:
    """Checkpoints and exported repositories of the benchmarked models."""
    if opts.quick:
        base_ckpt = _models.tiny_checkpoint(root / "tiny")
        choice = _models.ModelChoice(json.loads((base_ckpt / "config.json").read_text()), "tests' tiny model",
                                     base_ckpt)
        large_target = 2e5
    else:
        choice = _models.default_model(opts.checkpoint)
        large_target = opts.large_params
    models = []
    for name, config in (("default", choice.config), ("large", _models.widened(choice.config, large_target))):
        if name == "default" and choice.checkpoint is not None:
            ckpt = choice.checkpoint
        else:
            ckpt = _models.write_checkpoint(root / f"ckpt-{name}", config)
            if opts.quick:   # keep the tiny text encoder: no 90 MB MiniLM export in tests
                os.symlink(base_ckpt / "text_encoder", ckpt / "text_encoder")
        repo = _models.export_repository(ckpt, root / "models", f"bench-{name}", _log)
        manifest = json.loads((repo / f"bench-{name}" / "1" / "manifest.json").read_text())
        latent, text = manifest["latent"], manifest["text_encoder"]
        model = {"name": f"bench-{name}", "role": name, "checkpoint": ckpt, "repository": repo,
                 "shape": [latent["channels"], latent["height"], latent["width"]],
                 "tokens": text["max_tokens"], "dim": text["hidden_size"],
                 "unet": config["unet"], "params": _models.unet_params(config["unet"]),
                 "source": choice.source if name == "default" else f"default widened to ~{large_target / 1e6:g} M"}
        model["flops"] = count_flops(ckpt, sorted(set(opts.batches)), model["shape"], model["tokens"], model["dim"])
        _log(f"{name}: UNet channels {config['unet']['channels']}, {model['params'] / 1e6:.2f} M parameters, "
             f"{model['flops'][str(opts.batches[0])] / 1e9:.3f} GFLOP per call at batch {opts.batches[0]} "
             f"({model['source']})")
        models.append(model)
    return models


def measure(models: list[dict], opts: argparse.Namespace) -> tuple[dict, dict]:
    raw: dict = {m["role"]: {t: {e: [] for e in ENGINES} for t in opts.threads} for m in models}
    gemm: dict = {t: [] for t in opts.threads}
    for threads in opts.threads:
        for r in range(opts.rounds):
            order = ENGINES if r % 2 == 0 else ENGINES[::-1]
            for model in models:
                # The GEMM rate is sampled as often as the engines, so that the best of it (the
                # machine's rate when the neighbours paused) is as well found as theirs.
                rates = run_engine("gemm", {}, threads, opts)["gemm_flops"]
                gemm[threads].append(max(rates.values()))
                _log(f"[{threads} thread(s), round {r + 1}] GEMM float32: "
                     + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in rates.items()))
                for engine in order:
                    res = run_engine(engine, model, threads, opts)
                    raw[model["role"]][threads][engine].append(res)
                    lat = ", ".join(f"b{b} {v * 1e3:.1f} ms" for b, v in res["latency_s"].items())
                    ips = ", ".join(f"b{b} {v:.2f} img/s" for b, v in res["images_per_s"].items())
                    _log(f"[{threads} thread(s), round {r + 1}] {model['role']:7s} {engine:10s} {lat}; "
                         f"{opts.steps}-step sample {ips}  ({res['process_s']:.0f} s)")
    return raw, gemm


def _worker_spinning() -> str:
    from types import SimpleNamespace

    from services.common.settings import Settings
    from services.worker.onnx_runtime import OnnxModelRuntime

    options = OnnxModelRuntime._options(SimpleNamespace(settings=Settings()))
    try:
        return options.get_session_config_entry("session.intra_op.allow_spinning")
    except Exception:  # noqa: BLE001 - not set: ORT's default
        return "default (1)"


def summarise(models: list[dict], raw: dict, gemm: dict, opts: argparse.Namespace) -> dict:
    figures: dict = {"threads": opts.threads, "rounds": opts.rounds, "steps": opts.steps, "sampler": "dpmpp_2m",
                     "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default)"),
                     "ort_worker_spinning": _worker_spinning(),
                     "gemm_gflops": {str(t): max(v) / 1e9 for t, v in gemm.items()}, "models": {}, "goals": {}}
    for model in models:
        role = model["role"]
        entry = {"params_m": model["params"] / 1e6, "channels": model["unet"]["channels"],
                 "embed_dim": model["unet"]["embed_dim"], "latent": model["shape"], "source": model["source"],
                 "gflops_per_call": {b: f / 1e9 for b, f in model["flops"].items()}, "by_threads": {}}
        for threads in opts.threads:
            best = {e: best_of(raw[role][threads][e]) for e in ENGINES}
            torch_ = best["torch"]
            row: dict = {e: {"latency_ms": {b: v * 1e3 for b, v in best[e]["latency_s"].items()},
                             "latency_min_ms": {b: v * 1e3 for b, v in best[e]["latency_min_s"].items()},
                             "images_per_s": best[e]["images_per_s"], "finite": best[e]["finite"]} for e in ENGINES}
            for e in ("ort-plain", "ort-worker"):
                row[f"speedup_{e}"] = {
                    "latency": {b: torch_["latency_s"][b] / v for b, v in best[e]["latency_s"].items()},
                    # fastest single calls: the least disturbed by the neighbours, for comparison
                    "latency_min": {b: torch_["latency_min_s"][b] / v for b, v in best[e]["latency_min_s"].items()},
                    "images_per_s": {b: v / torch_["images_per_s"][b] for b, v in best[e]["images_per_s"].items()},
                }
            peak = max(gemm[threads])
            row["roofline_ort_worker"] = {b: model["flops"][b] / v / peak
                                          for b, v in best["ort-worker"]["latency_s"].items()}
            row["roofline_torch"] = {b: model["flops"][b] / v / peak for b, v in torch_["latency_s"].items()}
            entry["by_threads"][str(threads)] = row
            b1 = row["speedup_ort-worker"]["latency"].get("1")
            figures["goals"][f"{role}_t{threads}_ort_b1_speedup"] = b1
            figures["goals"][f"{role}_t{threads}_ort_b1_speedup_met"] = b1 is not None and b1 >= GOAL_SPEEDUP_B1
            best_roof = max(row["roofline_ort_worker"].values())
            figures["goals"][f"{role}_t{threads}_roofline_best"] = best_roof
            figures["goals"][f"{role}_t{threads}_roofline_met"] = best_roof >= GOAL_ROOFLINE
        figures["models"][role] = entry
    return figures


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = [str(t) for t in figures["threads"]]
    fig, axes = plt.subplots(1, len(threads), figsize=(6 * len(threads), 4.2), squeeze=False)
    for ax, t in zip(axes[0], threads, strict=True):
        labels, plain, worker, roof = [], [], [], []
        for role, entry in figures["models"].items():
            row = entry["by_threads"][t]
            for b in row["speedup_ort-worker"]["latency"]:
                labels.append(f"{role}\nb{b}")
                plain.append(row["speedup_ort-plain"]["latency"][b])
                worker.append(row["speedup_ort-worker"]["latency"][b])
                roof.append(row["roofline_ort_worker"][b])
        x = range(len(labels))
        ax.bar([i - 0.2 for i in x], plain, 0.4, label="ORT, plain file + default options")
        bars = ax.bar([i + 0.2 for i in x], worker, 0.4, label="ORT, worker runtime")
        for bar, r in zip(bars, roof, strict=True):
            ax.annotate(f"{r:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=7)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(GOAL_SPEEDUP_B1, color="red", lw=0.8, ls="--", label=f"goal at b1: {GOAL_SPEEDUP_B1}x")
        ax.set_xticks(list(x), labels, fontsize=8)
        ax.set_ylabel("speed-up over PyTorch eager (latency)")
        ax.set_title(f"{t} thread(s); numbers: roofline fraction (ORT worker)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny model, few calls: a smoke run for tests")
    p.add_argument("--checkpoint", type=Path, help="Atelier checkpoint folder with the default model's weights")
    p.add_argument("--threads", type=int, nargs="+", help="intra-op threads of both engines (default: 1 2)")
    p.add_argument("--rounds", type=int, help="engine processes per engine and thread count (default 2)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 16])
    p.add_argument("--sample-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=12)
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls per batch size")
    p.add_argument("--large-params", type=float, default=35e6)
    p.add_argument("--plot", type=Path, default=Path("docs/engines.png"), help="'' for no plot")
    p.add_argument("--process-timeout", type=float, default=300.0)
    opts = p.parse_args(argv)
    if opts.quick:
        opts.threads = opts.threads or [1]
        opts.rounds = opts.rounds or 1
        opts.batches, opts.sample_batches, opts.steps, opts.repeats, opts.budget = [1, 2], [2], 3, 3, 0.5
    opts.threads = opts.threads or [1, 2]
    opts.rounds = opts.rounds or 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # torch's OpenMP threads sleep when idle, as `atelier train` sets for this shared machine (and
    # as the worker's ORT sessions do): spinning threads that wait on a preempted peer made torch
    # at 2 threads take 1.9 s instead of 28 ms per batch-1 call here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="atelier-bench-engines-") as tmp:
        models = prepare(Path(tmp), opts)
        raw, gemm = measure(models, opts)
    figures = summarise(models, raw, gemm, opts)
    figures["wall_s"] = time.perf_counter() - started
    for role, entry in figures["models"].items():
        for t, row in entry["by_threads"].items():
            sp = row["speedup_ort-worker"]
            _log(f"{role} ({entry['params_m']:.1f} M), {t} thread(s): ORT worker vs torch "
                 + ", ".join(f"b{b} {v:.2f}x" for b, v in sp["latency"].items())
                 + "; sample " + ", ".join(f"b{b} {v:.2f}x" for b, v in sp["images_per_s"].items())
                 + "; roofline " + ", ".join(f"b{b} {v:.2f}" for b, v in row["roofline_ort_worker"].items()))
    if str(opts.plot):
        plot(figures, opts.plot)
        _log(f"plot: {opts.plot}")
    finish("engines", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
