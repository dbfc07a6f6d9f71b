"""Package a consistency-distilled student (``atelier train distill``) as a fast model folder.

The folder is what ``atelier export --include-source`` turns into ``models/<name>-fast/<N>``:
``config.json`` (the student's ModelConfig with ``unet.guidance_embed``, its ``consistency``
section plus the sampling ramp's end, fast-mode defaults, the teacher's data card and licences,
provenance of the teacher and of every training run), the student's EMA weights, the teacher's
VAE weights (the student was distilled on the teacher's latents, so only that VAE decodes them),
the runs' curves and the trainer's sample grid. docs/MODEL.md, "Fast mode", says why each default.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from diffusion.training.checkpoint import sha256_of
from diffusion.training.logger import plot_curves, read_metrics

# The student's defaults. 4 steps: the budget (1 row a step, guidance built in); the
# evaluation (the model's EVAL.md) measures 1, 2, 4 and 8.
FAST_SAMPLER, FAST_STEPS = "lcm", 4


def _run_stats(metrics: Path, label: str, command: str) -> dict:
    recs = sorted({r["step"]: r for r in read_metrics(metrics)}.values(), key=lambda r: r["step"])
    if not recs:
        raise ValueError(f"{metrics}: no metrics")
    rates = [r["steps_per_s"] for r in recs[1:] if "steps_per_s" in r]
    tail = recs[-10:]
    return {"run": label, "logged_steps": recs[-1]["step"] + 1,
            "wall_minutes": round((recs[-1]["time"] - recs[0]["time"]) / 60.0, 2),
            "steps_per_s": round(sum(rates) / len(rates), 2) if rates else None,
            "final_loss": round(sum(r["loss"] for r in tail) / len(tail), 4), "command": command}


def package_student(run: Path, teacher: Path, out: Path, *, runs: list[tuple[Path, str, str]],
                    guidance_scale: float | None = None, steps: int = FAST_STEPS,
                    ramp_sigma_min: float = 0.5, command: str = "", overwrite: bool = False) -> dict[str, Path]:
    """``run``: the final distillation run (config.json, unet_ema.safetensors, samples.png);
    ``teacher``: the packaged teacher (config.json, vae_ema.safetensors); ``runs``: every training
    run that led to the weights, oldest first, as (metrics.jsonl, label, command)."""
    run, teacher, out = Path(run), Path(teacher), Path(out)
    cfg = json.loads((run / "config.json").read_text(encoding="utf-8"))
    teacher_cfg = json.loads((teacher / "config.json").read_text(encoding="utf-8"))
    if "consistency" not in cfg or not cfg.get("unet", {}).get("guidance_embed"):
        raise ValueError(f"{run}: not a distilled student (config.json has no consistency section or guidance_embed)")
    for key in ("vae", "latent", "text", "styles"):
        if cfg.get(key) != teacher_cfg.get(key):
            raise ValueError(f"{run}: its {key} differs from the teacher's {teacher}: that VAE cannot serve it")
    vae = teacher / "vae_ema.safetensors"
    vae_sha256 = sha256_of(vae)
    bundle = cfg.get("distill", {}).get("bundle", {})
    if bundle.get("teacher_vae_sha256") and bundle["teacher_vae_sha256"] != vae_sha256:
        raise ValueError(f"{vae}: not the VAE the student was distilled with (sha256 differs from the bundle's)")
    lo, hi = cfg["consistency"]["guidance_range"]
    w = float(guidance_scale if guidance_scale is not None else teacher_cfg.get("defaults", {}).get("guidance_scale"))
    if not lo <= w <= hi:
        raise ValueError(f"guidance {w} is outside the range the student learned [{lo}, {hi}]")
    if not cfg["consistency"]["sigma_min"] <= ramp_sigma_min < cfg["edm"]["sigma_max"]:
        raise ValueError(f"ramp_sigma_min {ramp_sigma_min} is outside the student's sigma range")
    if (out / "config.json").exists() and not overwrite:
        raise ValueError(f"{out} already holds a packaged model; pick a new folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)

    files = {"unet": out / "unet_ema.safetensors", "vae": out / "vae_ema.safetensors"}
    shutil.copyfile(run / "unet_ema.safetensors", files["unet"])
    shutil.copyfile(vae, files["vae"])
    for f in files.values():
        f.chmod(0o644)
    stats = [_run_stats(Path(m), label, cmd) for m, label, cmd in runs]
    teacher_name = f"{teacher.parent.name}/{teacher.name}"
    config = {k: v for k, v in cfg.items() if k not in ("defaults", "provenance", "description")}
    config["consistency"] = {**cfg["consistency"], "sample_sigma_min": ramp_sigma_min}
    config["description"] = (f"Atelier emoji fast: the consistency-distilled (LCM) student of {teacher_name}: "
                              f"1-{steps} steps, one network row a step, guidance built in")
    config["defaults"] = {"sampler": FAST_SAMPLER, "steps": steps, "guidance_scale": w, "schedule": "karras"}
    config["provenance"] = {
        "teacher": {"model": f"models/{teacher_name}", "unet_sha256": sha256_of(teacher / "unet_ema.safetensors"),
                    "vae_sha256": vae_sha256, "provenance": teacher_cfg.get("provenance", {})},
        "distill_runs": stats,
        "distill_steps_logged": sum(s["logged_steps"] for s in stats),  # to the last logged step of each run
        "weights_dtype": {"unet": "float16", "vae": "float32"},
        "student_sha256": sha256_of(files["unet"]),
        "command": command,
        "packaged": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    files["config"] = out / "config.json"
    files["config"].write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if (run / "samples.png").exists():
        files["samples"] = out / "samples.png"
        shutil.copyfile(run / "samples.png", files["samples"])
    files["curves"] = _curves(runs, out / "training_curves.png")
    return files


def _curves(runs: list[tuple[Path, str, str]], out: Path) -> Path:
    """One panel per run (plot_curves reads a folder's metrics.jsonl: each run gets one)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for metrics, label, _ in runs:
            d = Path(tmp) / label.replace(" ", "_")
            d.mkdir()
            shutil.copyfile(metrics, d / "metrics.jsonl")
            dirs[f"distillation {label}"] = d
        return plot_curves(dirs, out, {name: ["loss"] for name in dirs})
