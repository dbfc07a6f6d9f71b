"""The demo of `make demo` / `atelier up --demo OUT`: what a studio would try first.

Runs, through the public SDK against a running gateway: a bulk job of several prompts
in every style (an ad agency's variants), a seamless texture, an image-to-image
restyle, an inpainting edit and a raw RGBA8 sprite for an engine. Writes every image
and one labelled contact sheet, `OUT/demo_sheet.png`.

When the gateway serves an upscaler (ListModels: `upscale_factor`), every job but the seamless
texture runs through it in the same job (the cascade: the 32x32 default model's images become
128x128), and one more row upscales a plain image of the base model as a studio's own image
(an UPSCALE job). The texture stays at the base size: the upscaler does not keep it seamless.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from atelier.v1 import types_pb2
from clients.client import Client
from clients.requests import EXTENSIONS, sampler_name

PROMPTS = ["grinning face with big eyes", "red apple", "cat face", "rocket", "slice of pizza", "red heart"]
CELL = 128


@dataclass
class DemoImage:
    label: str
    image: Image.Image
    path: Path
    provenance: dict = field(default_factory=dict)


def _decode(artifact) -> Image.Image:
    if artifact.mime_type == "application/x-atelier-rgba8":
        return Image.frombytes("RGBA", (artifact.width, artifact.height), artifact.data)
    return Image.open(io.BytesIO(artifact.data)).convert("RGBA")


def _run(client: Client, out: Path, name: str, label_of, **request) -> list[DemoImage]:
    images: list[DemoImage] = []
    finished = None
    for event in client.generate(**request):
        kind = event.WhichOneof("event")
        if kind == "artifact":
            a = event.artifact
            path = out / f"{name}-{a.index}.{EXTENSIONS.get(a.mime_type, 'bin')}"
            path.write_bytes(a.data)
            p = a.provenance
            provenance = {
                "model": f"{p.model_name}/{p.model_version}" if p.model_name else "", "model_sha256": p.model_sha256,
                "sampler": sampler_name(p.sampler), "steps": p.steps, "guidance_scale": round(p.guidance_scale, 3),
                "seed": p.seed, "prompt": p.prompt, "style": p.style, "size": f"{a.width}x{a.height}",
            }
            if p.upscale:
                provenance.update(upscaler=f"{p.upscaler_name}/{p.upscaler_version}", upscale=p.upscale,
                                  upscale_steps=p.upscale_steps)
            images.append(DemoImage(label_of(a), _decode(a), path, provenance))
        elif kind == "finished":
            finished = event.finished
    if finished is None or finished.state != types_pb2.JOB_STATE_SUCCEEDED:
        detail = finished.error_message if finished is not None else "the stream ended early"
        raise RuntimeError(f"demo job {name!r} did not succeed: {detail}")
    print(f"  {name}: {len(images)} image(s)", file=sys.stderr)
    return images


def _sheet(rows: list[tuple[str, list[DemoImage]]]) -> Image.Image:
    width = max(len(images) for _, images in rows)
    label_h, title_w = 14, 110
    sheet = Image.new("RGBA", (title_w + width * CELL, len(rows) * (CELL + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    # A checkerboard behind each cell shows the alpha channel (transparent sprite background).
    checker = Image.new("RGBA", (CELL, CELL), (235, 235, 235, 255))
    cd = ImageDraw.Draw(checker)
    for y in range(0, CELL, 12):
        for x in range(0, CELL, 12):
            if (x // 12 + y // 12) % 2:
                cd.rectangle([x, y, x + 11, y + 11], fill=(205, 205, 205, 255))
    for r, (title, images) in enumerate(rows):
        top = r * (CELL + label_h)
        draw.text((4, top + CELL // 2), title, fill="black")
        for c, item in enumerate(images):
            cell = checker.copy()
            # Small images as pixel art (nearest), larger ones filtered down.
            resample = Image.NEAREST if item.image.width <= CELL else Image.LANCZOS
            cell.alpha_composite(item.image.resize((CELL, CELL), resample))
            sheet.paste(cell, (title_w + c * CELL, top))
            draw.text((title_w + c * CELL + 2, top + CELL), item.label[:15], fill="black")
    return sheet


def _cascade(listed) -> dict:
    """The request fields that send every image through an upscaler the gateway serves (a ready one
    first), or none when it serves none."""
    upscalers = sorted((m for m in listed if m.upscale_factor), key=lambda m: not m.ready)
    if not upscalers:
        return {}
    chosen = upscalers[0]
    print(f"upscaler {chosen.name}/{chosen.version}: x{chosen.upscale_factor}, {chosen.default_steps} steps",
          file=sys.stderr)
    return {"upscale": chosen.upscale_factor, "upscaler": chosen.name, "upscaler_version": chosen.version}


def _upscaled(client: Client, out: Path, model: str, style: str, upscale: dict) -> list[DemoImage]:
    """A plain image of the base model, and the same image upscaled as a studio's own (an UPSCALE job)."""
    (small,) = _run(client, out, "small", lambda a: f"{a.width}x{a.height}", model=model, prompt="red apple",
                    style=style, seeds=[7])
    big = _run(client, out, "upscaled", lambda a: f"x{a.provenance.upscale}: {a.width}x{a.height}",
               upscale_image=small.path.read_bytes(), seeds=[7], upscaler=upscale["upscaler"],
               upscaler_version=upscale["upscaler_version"])
    return [small, *big]


def run_demo(address: str, api_key: str | None, out: Path) -> int:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with Client(address, api_key, timeout=600) as client:
        listed = client.list_models()
        models = [m for m in listed if m.ready and not m.upscale_factor]
        if not models:
            print("no model is ready on the gateway", file=sys.stderr)
            return 1
        model = models[0]
        styles = list(model.styles) or [""]
        print(f"model {model.name}/{model.version}: {model.width}x{model.height}, styles {styles}", file=sys.stderr)
        upscale = _cascade(listed)
        rows: list[tuple[str, list[DemoImage]]] = []

        variants = [{"prompt": p, "style": s} for s in styles for p in PROMPTS]
        bulk = _run(client, out, "variants", lambda a: variants[a.prompt_index]["prompt"],
                    model=model.name, prompts=variants, seeds=[7], priority="batch", **upscale)
        for i, style in enumerate(styles):
            rows.append((style or "no style", bulk[i * len(PROMPTS):(i + 1) * len(PROMPTS)]))

        seeds = [1, 2, 3, 4]
        rows.append(("seeds", _run(client, out, "seeds", lambda a: f"seed {a.seed}", model=model.name,
                                   prompt="smiling face with sunglasses", style=styles[0], seeds=seeds, **upscale)))

        tile = _run(client, out, "tile", lambda a: "tile", model=model.name, prompt="green leaf",
                    style=styles[-1], seeds=[11], tiling=True)[0]
        tiled = Image.new("RGBA", (tile.image.width * 3, tile.image.height * 3))
        for y in range(3):
            for x in range(3):
                tiled.paste(tile.image, (x * tile.image.width, y * tile.image.height))
        tiled.save(out / "tile-3x3.png")
        rows.append(("seamless tile", [tile, DemoImage("3x3 repeat", tiled, out / "tile-3x3.png")]))

        source = bulk[0]
        buf = io.BytesIO()
        source.image.save(buf, format="PNG")
        restyle = _run(client, out, "img2img", lambda a: f"strength {a.provenance.strength:.1f}",
                       model=model.name, prompt=PROMPTS[0], style=styles[-1], seeds=[5],
                       init_image=buf.getvalue(), strength=0.6, **upscale)
        mask = Image.new("L", source.image.size, 0)
        ImageDraw.Draw(mask).rectangle([0, source.image.height // 2, source.image.width, source.image.height],
                                       fill=255)
        mbuf = io.BytesIO()
        mask.save(mbuf, format="PNG")
        inpaint = _run(client, out, "inpaint", lambda a: "lower half new", model=model.name, prompt=PROMPTS[0],
                       style=styles[0], seeds=[9], init_image=buf.getvalue(), mask=mbuf.getvalue(), strength=1.0,
                       **upscale)
        rows.append(("edits", [DemoImage("source", source.image, source.path), *restyle, *inpaint]))

        sprite = _run(client, out, "sprite", lambda a: "raw RGBA8", model=model.name, prompt="rocket",
                      style=styles[0], seeds=[3], output_format="raw_rgba8", **upscale)
        rows[-1][1].extend(sprite)
        if upscale:
            rows.append(("x4 upscaler", _upscaled(client, out, model.name, styles[0], upscale)))

    sheet = _sheet(rows)
    sheet.save(out / "demo_sheet.png")
    record = [{"file": item.path.name, **item.provenance} for _, items in rows for item in items if item.provenance]
    (out / "provenance.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {sum(len(i) for _, i in rows)} images, {out / 'demo_sheet.png'} and {out / 'provenance.json'}",
          file=sys.stderr)
    return 0
