"""`atelier eval upscale`: an upscaler package against bicubic on held-out 128² images.

The held-out subjects (diffusion.data.dataset.split_of's validation split) are box-downsampled
to 32² by the data pipeline's own filter (diffusion.resample.downsample) and stored as uint8, as
an uploaded image would arrive; each method upscales them x4 and its output is quantised to
uint8 premultiplied RGBA, as a served image is. Methods: bicubic (the sampler's `up` alone,
clamped), the CNN (`fast`, when the package has it) and the diffusion chain at 1/2/4/8 steps,
all through diffusion/upscale.py, the sampler workers run (the networks here are the package's
PyTorch modules; ONNX parity is the export's check).

Figures per method (definitions in diffusion/evaluation/image_quality.py and perceptual.py):
PSNR and SSIM over white, alpha MAE, the perceptual distance in the domain classifier's
feature space at 128², the 32² feature distance (penultimate features of both images
box-downsampled to 32², which is what the classifier was trained at: a consistency figure),
round-trip PSNR (output box-downsampled back to 32² against the input), and time per image.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image, ImageDraw

from diffusion.data.dataset import VALIDATION, ImageDataset
from diffusion.data.images import over_background
from diffusion.evaluation.classifier import DomainClassifier
from diffusion.evaluation.contact_sheet import _font
from diffusion.evaluation.embed import embed
from diffusion.evaluation.image_quality import alpha_mae, psnr, rgba_psnr, ssim
from diffusion.evaluation.perceptual import perceptual_distance
from diffusion.nets.upscaler_package import UpscalerPackage
from diffusion.resample import downsample, upsample
from diffusion.upscale import UpscaleParams, alpha_clamp, plan_tiles, upscale, upscale_fast

STEPS = (1, 2, 4, 8)
Progress = Callable[[Iterable], Iterable]


def to_unit(images: np.ndarray) -> np.ndarray:
    """uint8 premultiplied RGBA [N, H, W, 4] -> float32 [N, 4, H, W] in [-1, 1]."""
    return np.ascontiguousarray(np.transpose(images, (0, 3, 1, 2)), dtype=np.float32) / 127.5 - 1.0


def to_uint8(x: np.ndarray) -> np.ndarray:
    """float [N, 4, H, W] in [-1, 1] -> uint8 premultiplied RGBA [N, H, W, 4], colour <= alpha."""
    out = np.clip(np.rint((np.transpose(x, (0, 2, 3, 1)) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    out[..., :3] = np.minimum(out[..., :3], out[..., 3:4])
    return out


def low_resolution(hr: np.ndarray, factor: int) -> np.ndarray:
    """uint8 HR [N, H, W, 4] -> uint8 LR [N, H/f, W/f, 4] by the data pipeline's box filter."""
    return to_uint8(downsample(to_unit(hr), factor))


def held_out(ds: ImageDataset, limit: int | None = None) -> np.ndarray:
    """The validation split's images (unseen subjects), an evenly spaced `limit` of them if asked."""
    images = ds.subset(VALIDATION).images
    if len(images) == 0:
        raise ValueError("the dataset has no held-out (validation) images")
    if limit is not None and limit < len(images):
        images = images[np.linspace(0, len(images) - 1, limit).round().astype(int)]
    return images


def torch_denoiser(net: torch.nn.Module):
    """The package's diffusion network as the SR sampler's `denoise(x, sigma, low_res, aug)`."""

    @torch.no_grad()
    def denoise(x, sigma, low_res, aug):
        args = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (x, sigma, low_res, aug))
        return net(*args).numpy()

    return denoise


def torch_fast(net: torch.nn.Module):
    @torch.no_grad()
    def fast(low_res):
        return net(torch.from_numpy(np.ascontiguousarray(low_res, dtype=np.float32))).numpy()

    return fast


def params_of(package: UpscalerPackage, aug_level: float | None = None) -> UpscaleParams:
    sampling = package.sampling()
    if aug_level is not None:
        sampling["aug_level"] = aug_level
    return UpscaleParams.from_spec(SimpleNamespace(**sampling))


@dataclass(frozen=True)
class Method:
    name: str                 # "bicubic", "cnn", "diffusion-4", ...
    steps: int = 0            # diffusion steps; 0 for one-pass methods


def methods_of(package: UpscalerPackage, steps: Sequence[int] = STEPS) -> list[Method]:
    out = [Method("bicubic")]
    if package.fast is not None:
        out.append(Method("cnn"))
    return out + [Method(f"diffusion-{s}", s) for s in steps]


def run_method(method: Method, package: UpscalerPackage, params: UpscaleParams, lr: np.ndarray, *,
               seed: int = 0, batch_size: int = 32) -> np.ndarray:
    """uint8 LR [N, h, w, 4] -> uint8 HR by `method`; image i is seeded seed + i."""
    outs = []
    for i in range(0, len(lr), batch_size):
        x = to_unit(lr[i:i + batch_size])
        if method.name == "bicubic":
            hr = alpha_clamp(upsample(x, params.factor))
        elif method.name == "cnn":
            hr = upscale_fast(x, torch_fast(package.fast), params)
        else:
            seeds = list(range(seed + i, seed + i + len(x)))
            hr = upscale(x, torch_denoiser(package.diffusion), params, steps=method.steps, seeds=seeds)
        outs.append(to_uint8(hr))
    return np.concatenate(outs)


def figures(outputs: np.ndarray, truth: np.ndarray, lr: np.ndarray, classifier: DomainClassifier,
            factor: int) -> dict[str, float]:
    """Means over the images of every figure (module docstring)."""
    small_out, small_truth = low_resolution(outputs, factor), low_resolution(truth, factor)
    f_out, f_truth = embed(classifier, small_out).features, embed(classifier, small_truth).features
    return {
        "psnr": float(psnr(outputs, truth).mean()),
        "ssim": float(ssim(outputs, truth).mean()),
        "alpha_mae": float(alpha_mae(outputs, truth).mean()),
        "perceptual": float(perceptual_distance(classifier, outputs, truth).mean()),
        "feature_distance_32": float(np.linalg.norm(f_out - f_truth, axis=1).mean()),
        "roundtrip_psnr": float(rgba_psnr(small_out, lr).mean()),
    }


def tiling_check(package: UpscalerPackage, params: UpscaleParams, lr: np.ndarray, steps: int,
                 seed: int = 0) -> dict[str, float]:
    """A mosaic of held-out inputs larger than one tile, upscaled in tiles and whole: how far apart
    (8-bit levels of premultiplied RGBA) and how many tiles."""
    side = params.tile + params.tile // 2       # one and a half tiles a side: every kind of overlap
    cells = -(-side // lr.shape[1])
    mosaic = np.concatenate([np.concatenate(list(lr[np.arange(r * cells, (r + 1) * cells) % len(lr)]), axis=1)
                             for r in range(cells)], axis=0)[None, :side, :side]
    whole = UpscaleParams(**{**params.__dict__, "tile": side + params.size_multiple})
    x = to_unit(mosaic)
    den = torch_denoiser(package.diffusion)
    tiled = upscale(x, den, params, steps=steps, seeds=[seed]).astype(np.float64)
    single = upscale(x, den, whole, steps=steps, seeds=[seed]).astype(np.float64)
    diff = np.abs(tiled - single) * 127.5
    hr = side * params.factor
    return {"input_side": side, "tiles": plan_tiles(hr, hr, params).count, "steps": steps,
            "max_abs_levels": float(diff.max()), "mean_abs_levels": float(diff.mean())}


def evaluate_upscaler(package: UpscalerPackage, ds: ImageDataset, classifier: DomainClassifier, *,
                      steps: Sequence[int] = STEPS, limit: int | None = None, seed: int = 0,
                      batch_size: int = 32, aug_levels: Sequence[float] = (),
                      progress: Progress = lambda it: it) -> tuple[dict, dict[str, np.ndarray]]:
    """Every method's figures on the held-out images; returns (report, uint8 outputs per method)."""
    params = params_of(package)
    truth = held_out(ds, limit)
    lr = low_resolution(truth, params.factor)
    results, outputs = {}, {}
    for method in progress(methods_of(package, steps)):
        start = time.perf_counter()
        out = run_method(method, package, params, lr, seed=seed, batch_size=batch_size)
        seconds = time.perf_counter() - start
        outputs[method.name] = out
        results[method.name] = {**figures(out, truth, lr, classifier, params.factor), "steps": method.steps,
                                "ms_per_image": 1000.0 * seconds / len(lr)}
    sweep = {}
    for level in aug_levels:
        p = params_of(package, level)
        out = run_method(Method("diffusion", package.inference["default_steps"]), package, p, lr, seed=seed,
                         batch_size=batch_size)
        sweep[f"{level:g}"] = figures(out, truth, lr, classifier, params.factor)
    report = {
        "images": len(truth), "image_size": int(truth.shape[1]), "input_size": int(lr.shape[1]),
        "factor": params.factor, "seed": seed, "aug_level": params.aug_level,
        "default_steps": int(package.inference["default_steps"]), "sampling": package.sampling(),
        "methods": results, "aug_sweep": sweep,
        "tiling": tiling_check(package, params, lr, int(package.inference["default_steps"]), seed),
    }
    report["goals"] = goals(report)
    return report, {**outputs, "lr": lr, "truth": truth}


def goals(report: dict) -> list[dict]:
    """The issue's goals for the shipped default (diffusion at `default_steps`), each met or not."""
    out = [{"goal": "SR steps at the shipped default <= 4", "value": report["default_steps"], "target": 4,
            "met": report["default_steps"] <= 4}]
    shipped = report["methods"].get(f"diffusion-{report['default_steps']}")
    return out if shipped is None else out + method_goals(shipped, report["methods"]["bicubic"])


def method_goals(row: dict, bicubic: dict) -> list[dict]:
    """The issue's image-quality goals for one method's figures."""
    out = []
    rows = [
        ("perceptual distance <= 0.7 x bicubic's", row["perceptual"], 0.7 * bicubic["perceptual"], "<="),
        ("PSNR not below bicubic's", row["psnr"], bicubic["psnr"], ">="),
        ("SSIM not below bicubic's", row["ssim"], bicubic["ssim"], ">="),
        ("round-trip PSNR >= 38 dB", row["roundtrip_psnr"], 38.0, ">="),
        ("alpha MAE <= 1/2 of bicubic's", row["alpha_mae"], 0.5 * bicubic["alpha_mae"], "<="),
    ]
    for goal, value, target, op in rows:
        out.append({"goal": goal, "value": value, "target": target,
                    "met": bool(value <= target if op == "<=" else value >= target)})
    return out


COLUMNS = [("psnr", "PSNR (dB, over white)", "{:.2f}"), ("ssim", "SSIM (over white)", "{:.4f}"),
           ("alpha_mae", "alpha MAE (x255)", "{:.2f}"), ("perceptual", "perceptual distance", "{:.4f}"),
           ("feature_distance_32", "32² feature distance", "{:.3f}"),
           ("roundtrip_psnr", "round-trip PSNR (dB)", "{:.2f}"), ("ms_per_image", "ms / image", "{:.1f}")]


def _value(key: str, row: dict) -> float:
    return row[key] * 255.0 if key == "alpha_mae" else row[key]


def markdown(report: dict, label: str) -> str:
    lines = [f"# Evaluation of the upscaler {label}", "",
             f"{report['images']} held-out {report['image_size']}² images (validation subjects, unseen in "
             f"training), box-downsampled to {report['input_size']}² and upscaled x{report['factor']}; diffusion "
             f"at aug_level {report['aug_level']:g}, seeds from {report['seed']}. Outputs and references are "
             "uint8 premultiplied RGBA, as served.", "",
             "| method | " + " | ".join(c[1] for c in COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, row in report["methods"].items():
        lines.append(f"| {name} | " + " | ".join(fmt.format(_value(k, row)) for k, _, fmt in COLUMNS) + " |")
    lines += ["", "Better: PSNR, SSIM, round-trip PSNR higher; alpha MAE, both distances and time lower.", "",
              "## Goals (shipped default: diffusion at "
              f"{report['default_steps']} steps)", ""]
    for g in report["goals"]:
        value = g["value"] * 255 if "alpha" in g["goal"] else g["value"]
        target = g["target"] * 255 if "alpha" in g["goal"] else g["target"]
        note = "; a gain: no adherence lost" if g.get("no_loss") and not g["met"] else ""
        lines.append(f"- {'met' if g['met'] else 'NOT met'}: {g['goal']} ({value:.4g} vs {target:.4g}{note})")
    if not report.get("generated"):
        lines.append("- not measured by this run: adherence of upscaled generations and FID at 128² "
                     "(they need the base model's outputs: `--base-model`)")
    lines.append("")
    bicubic = report["methods"]["bicubic"]
    names = [g["goal"] for g in method_goals(bicubic, bicubic)]
    lines += ["Every method against the image-quality goals:", "",
              "| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name, row in report["methods"].items():
        if name != "bicubic":
            marks = ["met" if g["met"] else "not met" for g in method_goals(row, bicubic)]
            lines.append(f"| {name} | " + " | ".join(marks) + " |")
    lines.append("")
    if report.get("aug_sweep"):
        figures_only = COLUMNS[:-1]
        lines += [f"## Augmentation level at {report['default_steps']} steps", "",
                  "| aug_level | " + " | ".join(c[1] for c in figures_only) + " |",
                  "|---|" + "---|" * len(figures_only)]
        for level, row in report["aug_sweep"].items():
            lines.append(f"| {level} | " + " | ".join(fmt.format(_value(k, row)) for k, _, fmt in figures_only) + " |")
        lines.append("")
    t = report["tiling"]
    lines += ["## Tiles", "",
              f"A {t['input_side']}² mosaic of held-out inputs upscaled in {t['tiles']} tiles and in one piece "
              f"({t['steps']} steps, same seed): largest difference {t['max_abs_levels']:.2f}, mean "
              f"{t['mean_abs_levels']:.3f} (8-bit levels of premultiplied RGBA).", "",
              "## Definitions", "",
              "- PSNR and SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid "
              "region) on the images composited over white, RGB in [0, 1]: colour under transparent pixels counts "
              "as it is seen. Alpha is judged apart: mean absolute error of the alpha channel, in 8-bit levels.",
              "- Perceptual distance: LPIPS's formula (Zhang et al. 2018, eq. 1, equal layer weights: its "
              "uncalibrated baseline) over the stage activations of the domain classifier run on the 128² images "
              "themselves. LPIPS' own backbone weights (AlexNet/VGG) cannot be downloaded here. The classifier was "
              "trained at 32², but the 32² version of an SR output is its input again, so a distance between 32² "
              "downsamples cannot see what SR adds; the 32² feature distance column shows it (penultimate "
              "features of both images box-downsampled to 32²): a consistency figure, which follows the round-trip "
              "PSNR (bicubic's is large because its output does not box-downsample back to its input).",
              "- Round-trip PSNR: the output box-downsampled x4 (the data pipeline's filter) against the input, "
              "premultiplied RGBA in [0, 1].",
              "- ms / image: this machine, PyTorch, the whole held-out set in batches.", ""]
    if report.get("command"):
        lines += ["Command:", "", "```", report["command"], "```", ""]
    return "\n".join(lines)


def contact_sheet(outputs: dict[str, np.ndarray], diffusion: str, rows: int = 8, scale: int = 2,
                  pad: int = 4, lr_label: str = "low-res x4") -> Image.Image:
    """Images in rows; columns LR (enlarged 4x, nearest) | bicubic | CNN | diffusion | truth (those
    `outputs` has), each at the output size, over white, the whole sheet enlarged `scale` times
    without smoothing."""
    columns = [(lr_label, "lr"), ("bicubic", "bicubic"), ("CNN", "cnn"), (diffusion, diffusion),
               ("ground truth", "truth")]
    columns = [(label, key) for label, key in columns if key in outputs]
    truth = outputs.get("truth", outputs[diffusion])
    n = min(rows, len(truth))
    pick = np.linspace(0, len(truth) - 1, n).round().astype(int)
    h, w = truth.shape[1:3]
    header = 22
    sheet = Image.new("RGB", ((w + pad) * len(columns) + pad, header + (h + pad) * n + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, (label, key) in enumerate(columns):
        x = pad + c * (w + pad)
        draw.text((x, 4), label, fill=(0, 0, 0), font=_font(12))
        images = outputs[key][pick]
        if key == "lr":
            f = h // images.shape[1]
            images = images.repeat(f, axis=1).repeat(f, axis=2)
        flat = over_background(images)
        for r in range(n):
            sheet.paste(Image.fromarray(flat[r]), (x, header + pad + r * (h + pad)))
    return sheet.resize((sheet.width * scale, sheet.height * scale), Image.Resampling.NEAREST) if scale > 1 else sheet
