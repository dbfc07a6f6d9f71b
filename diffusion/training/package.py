"""Package a finished run as the shipped model folder (``models/<name>/<version>/``).

Writes ``config.json`` (ModelConfig + sampling defaults, data card, licences, provenance: the
layout export/sources/atelier.py reads), the EMA weights, training curves, the last sample
grid, VAE reconstructions, the data contact sheet and MODEL_CARD.md."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

from diffusion.defaults import DEFAULT_GUIDANCE, DEFAULT_SAMPLER, DEFAULT_STEPS
from diffusion.training.logger import plot_curves, read_metrics

MAX_FILE_BYTES = 20 * 1024 * 1024  # every committed file stays under 20 MB


def ship_weights(src: Path, dst: Path) -> str:
    """Copy fp32 weights; if that file would reach 20 MB, store them as float16 instead (loaders
    cast back with ``load_state_dict``; |relative error| <= 2^-11, far below the EMA's own noise)."""
    if src.stat().st_size < MAX_FILE_BYTES:
        shutil.copyfile(src, dst)
        return "float32"
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(src))
    for k, v in state.items():
        if v.is_floating_point() and v.abs().max() > 6.0e4:
            raise ValueError(f"{src}: {k} does not fit float16")
    save_file({k: v.to(torch.float16) if v.is_floating_point() else v for k, v in state.items()}, str(dst))
    dst.chmod(0o644)
    if dst.stat().st_size >= MAX_FILE_BYTES:
        raise ValueError(f"{dst} is {dst.stat().st_size} bytes even in float16: over the 20 MB limit")
    return "float16"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _run_stats(run: Path) -> dict:
    recs = read_metrics(run / "metrics.jsonl")
    summary = _json(run / "summary.json")
    if not recs:
        return {"steps": summary.get("steps", 0)}
    rates = [r["steps_per_s"] for r in recs if "steps_per_s" in r]
    last = recs[-1]
    return {"steps": summary.get("steps", last["step"] + 1),
            "wall_minutes": round((recs[-1]["time"] - recs[0]["time"]) / 60.0, 1),
            "steps_per_s": round(rates[-1], 3) if rates else None,
            "final_loss": round(sum(r["loss"] for r in recs[-20:]) / len(recs[-20:]), 4)}


def _vae_source(vae_from: Path, unet_config: dict) -> dict:
    """A shipped model's VAE for a new UNet: refused unless the UNet was trained on exactly its
    latents (same architecture, same latent scale and shift), since the UNet only knows those."""
    shipped = _json(vae_from / "config.json")
    if not shipped or not (vae_from / "vae_ema.safetensors").is_file():
        raise ValueError(f"--vae-from {vae_from}: not a packaged model folder (config.json + vae_ema.safetensors)")
    for key, what in (("vae", "VAE architecture"), ("latent", "latent scale, shift and shape")):
        if shipped.get(key) != unet_config.get(key):
            raise ValueError(f"--vae-from {vae_from}: its {what} {shipped.get(key)} differs from the one the "
                             f"UNet run was trained on {unet_config.get(key)}")
    prov = shipped.get("provenance", {})
    return {"weights": vae_from / "vae_ema.safetensors", "reconstructions": vae_from / "vae_reconstructions.png",
            "train": prov.get("vae_train", {}), "stats": {**prov.get("vae_stats", {}), "from": str(vae_from)},
            "sha256": hashlib.sha256((vae_from / "vae_ema.safetensors").read_bytes()).hexdigest()}


def _is_unet_run(folder: Path) -> bool:
    return (folder / "model_config.json").is_file() and (folder / "unet_ema.safetensors").is_file()


def _trained_on(unet_run: Path) -> Path:
    """The packaged model whose frozen VAE a UNet run encoded its latents with (its checkpoint says)."""
    source = _json(unet_run / "checkpoints" / "latest.json").get("vae_run")
    if not source or not (Path(source) / "vae_ema.safetensors").is_file() or \
            not (Path(source) / "config.json").is_file():
        raise ValueError(f"{unet_run}: a UNet run whose VAE is not a packaged model's ({source or 'not recorded'}); "
                         "pass --vae-from MODEL")
    return Path(source)


def package_model(root: Path, out: Path, data_card: Path | None = None, contact: Path | None = None,
                  command: str = "", vae_from: Path | None = None, notes: Path | None = None,
                  overwrite: bool = False) -> dict[str, Path]:
    """``root`` holds the run's ``unet/`` (and ``vae/`` unless ``vae_from`` names a packaged
    model whose VAE the UNet was trained on), or is itself a UNet run on a packaged model's VAE
    (`atelier train finetune`'s run folder, `train unet --vae-from`'s), whose VAE is then that
    model's unless ``vae_from`` says otherwise. Everything is checked before anything is written."""
    root, out = Path(root), Path(out)
    vae_run, unet_run = root / "vae", root / "unet"
    if _is_unet_run(root) and not _is_unet_run(unet_run):
        unet_run = root
        vae_from = vae_from if vae_from is not None else _trained_on(root)
    model_cfg = _json(unet_run / "model_config.json")
    if not model_cfg or not (unet_run / "unet_ema.safetensors").is_file():
        raise ValueError(f"{unet_run}: no finished UNet run (model_config.json + unet_ema.safetensors)")
    if (out / "config.json").exists() and not overwrite:
        raise ValueError(f"{out} already holds a packaged model; pick a new version folder or pass --overwrite")
    if vae_from is not None:
        vae = _vae_source(Path(vae_from), model_cfg)
    else:
        if not (vae_run / "vae_ema.safetensors").is_file():
            raise ValueError(f"{vae_run}: no VAE run (pass --vae-from MODEL to reuse a packaged model's VAE)")
        vae = {"weights": vae_run / "vae_ema.safetensors", "reconstructions": vae_run / "samples" / "latest.png",
               "train": _json(vae_run / "train_config.json"), "stats": _run_stats(vae_run)}
    notes_text = Path(notes).read_text(encoding="utf-8") if notes else ""

    out.mkdir(parents=True, exist_ok=True)
    files = {"vae": out / "vae_ema.safetensors", "unet": out / "unet_ema.safetensors"}
    dtypes = {"vae": ship_weights(vae["weights"], files["vae"]),
              "unet": ship_weights(unet_run / "unet_ema.safetensors", files["unet"])}
    card = _json(data_card) if data_card else {}
    # One record per style's source, the shape the model manifest's `licenses` takes.
    licences = [{"style": s, "license": v["licence"], "attribution": v["attribution"], "source": v["package"]}
                for s, v in sorted(card.get("sources", {}).items())]
    unet_stats = _run_stats(unet_run)
    provenance = {"vae_train": vae["train"], "unet_train": _json(unet_run / "train_config.json"),
                  "vae_stats": vae["stats"], "unet_stats": unet_stats, "command": command,
                  "weights_dtype": dtypes,
                  "packaged": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if vae_from is not None:
        provenance["vae_from"] = {"model": str(vae_from), "sha256": vae["sha256"]}
    config = {**model_cfg,
              "description": "Atelier emoji: text- and style-conditioned latent diffusion on 32x32 RGBA emoji",
              "defaults": {"sampler": DEFAULT_SAMPLER, "steps": DEFAULT_STEPS, "guidance_scale": DEFAULT_GUIDANCE,
                           "schedule": "karras"},
              "data_card": card, "licenses": licences, "provenance": provenance}
    files["config"] = out / "config.json"
    files["config"].write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    curves = {"UNet (EDM loss)": unet_run} if vae_from is not None else {"VAE (L1 + KL)": vae_run,
                                                                         "UNet (EDM loss)": unet_run}
    files["curves"] = plot_curves(curves, out / "training_curves.png",
                                  {"VAE (L1 + KL)": ["loss", "l1"], "UNet (EDM loss)": ["loss"]})
    for name, src in (("samples", unet_run / "samples" / "latest.png"),
                      ("vae_reconstructions", vae["reconstructions"]), ("data_contact_sheet", contact)):
        if src and Path(src).exists():
            files[name] = out / f"{name}.png"
            shutil.copyfile(src, files[name])
    files["card"] = out / "MODEL_CARD.md"
    title = f"{out.parent.name}, version {out.name}"
    files["card"].write_text(model_card(config, vae["stats"], unet_stats, command, title, notes_text),
                             encoding="utf-8")
    return files


def model_card(config: dict, vae_stats: dict, unet_stats: dict, command: str, title: str, notes: str = "") -> str:
    unet, vae, latent, card = config["unet"], config["vae"], config["latent"], config.get("data_card", {})
    lines = [
        f"# {title}", "",
        "A small text- and style-conditioned latent diffusion model for 32x32 RGBA (premultiplied alpha)",
        "emoji-like sprites, trained from scratch on this project's 2-core CPU.", "",
        "## Model", "",
        f"- VAE: KL-regularised, channels {vae['channels']}, {2 ** (len(vae['channels']) - 1)}x downsampling, "
        f"{vae['latent_channels']} latent channels; latents {latent['latent_channels']}x{latent['latent_size']}x"
        f"{latent['latent_size']}; z = (mean(E(x)) - shift) * scale with shift = {latent['shift']:.6f}, "
        f"scale = {latent['scale']:.6f} (unit std over the training set).",
        f"- UNet: channels {unet['channels']}, {unet['num_res_blocks']} res blocks a level, self- and cross-attention "
        f"at levels {unet['attention']}, embedding {unet['embed_dim']}, {unet['num_styles']} style ids "
        f"{list(config['styles'])} (0 = none).",
        "- Parameterisation: EDM preconditioning (Karras et al. 2022), sigma_data = "
        f"{config['edm']['sigma_data']}; the network is a denoiser D(x, sigma, cond) -> x0.",
        f"- Text: {config['text']['encoder']} token states [B, {config['text']['max_length']}, "
        f"{config['text']['dim']}] + attention mask; unconditional = caption \"\" with style 0.",
        "- Classifier-free guidance: conditioning dropped in training 10% (both), 5% text only, 5% style only.",
        "", "## Data", "",
        f"{card.get('images', '?')} images ({card.get('train', '?')} train, {card.get('validation', '?')} validation), "
        "split by a hash of the emoji id (the same emoji is in the same split in every style).", "",
        "| style | images | source | licence |", "|---|---|---|---|"]
    for s, n in card.get("per_style", {}).items():
        src = card.get("sources", {}).get(s, {})
        lines.append(f"| {s} | {n} | {src.get('package', '-')} | {src.get('licence', '-')}: "
                     f"{src.get('attribution', '')} |")
    lines += ["", "Captions: the emoji's Unicode name plus its short names (emoji.json of emoji-datasource).",
              "Twemoji artwork is CC-BY-4.0: attribution to Twitter/X Corp and contributors is required when "
              "redistributing images derived from it.", "",
              "## Training", "",
              "| stage | steps | wall time (min) | steps/s | final loss |", "|---|---|---|---|---|",
              f"| VAE{' (reused from ' + vae_stats['from'] + ')' if vae_stats.get('from') else ''} "
              f"| {vae_stats.get('steps')} | {vae_stats.get('wall_minutes')} | {vae_stats.get('steps_per_s')} "
              f"| {vae_stats.get('final_loss')} |",
              f"| UNet | {unet_stats.get('steps')} | {unet_stats.get('wall_minutes')} | "
              f"{unet_stats.get('steps_per_s')} | {unet_stats.get('final_loss')} |", "",
              "Measured on a 2-core CPU shared with other jobs (steps/s varies with the load).", "",
              "Command:", "", "```", command or "(not recorded)", "```", "",
              "## Limitations", "",
              "32x32 pixels and a small UNet trained on a 2-core CPU: simple, bold emoji "
              "(faces, fruit, hearts, flags with large colour fields) come out best; fine detail, text and "
              "multi-person scenes do not. Captions are English emoji names only.", "",
              f"Weights dtype: {config['provenance'].get('weights_dtype')} (EMA weights; float16 where float32 "
              "would exceed the repository's 20 MB per-file limit).", "",
              "Files: `config.json`, `vae_ema.safetensors`, `unet_ema.safetensors` (EMA weights), "
              "`training_curves.png`, `samples.png` (rows: styles, columns: prompts), `vae_reconstructions.png`, "
              "`data_contact_sheet.png`.", ""]
    if notes.strip():
        lines += [notes.strip(), ""]
    return "\n".join(lines)
