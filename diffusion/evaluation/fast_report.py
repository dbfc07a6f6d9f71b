"""EVAL.md of a fast (consistency-distilled) model: its `atelier eval model` runs at several step
counts next to its teacher's own evaluation, and issue 14's goals met or not.

    python -m diffusion.evaluation.fast_report --teacher models/atelier-emoji/2/eval.json \\
        --run 1=eval_1_step.json --run 2=eval_2_steps.json --run 4=eval.json --run 8=eval_8_steps.json \\
        [--sweep LABEL=EVAL.JSON ...] --default 4 --out EVAL.md

Every run must share the teacher's prompts, seeds, split and classifier (checked), so the
columns differ only in the generator."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from diffusion.evaluation.report import FIGURES, _cell, _per_style_table

# Issue 14: at 4 steps FID <= 1.10x the teacher's and adherence >= 0.95x; at 2 steps FID <= 1.3x.
GOALS = ((4, "fid", "<=", 1.10), (4, "category_adherence", ">=", 0.95), (4, "style_adherence", ">=", 0.95),
         (2, "fid", "<=", 1.30))
SAME = ("split", "prompts", "seeds_per_prompt", "seed")


def _load(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def check_comparable(teacher: dict, runs: dict) -> None:
    t = teacher["generation"]
    for label, r in runs.items():
        g = r["generation"]
        differs = [k for k in SAME if g.get(k) != t.get(k)]
        if differs or r["classifier"]["path"] != teacher["classifier"]["path"]:
            raise ValueError(f"run {label} differs from the teacher's evaluation in {differs or ['classifier']}")


def goals(teacher: dict, runs: dict[int, dict]) -> list[dict]:
    out = []
    tg = teacher["sets"]["generated"]
    for steps, key, op, factor in GOALS:
        if steps not in runs:
            continue
        value, target = runs[steps]["sets"]["generated"][key], factor * tg[key]
        out.append({"steps": steps, "figure": key, "value": value, "target": target, "factor": factor, "op": op,
                    "ratio": value / tg[key], "met": value <= target if op == "<=" else value >= target})
    return out


def markdown(label: str, teacher: dict, runs: dict[int, dict], default: int, sweep: dict[str, dict],
             commands: list[str]) -> str:
    t, d = teacher, runs[default]
    g = d["generation"]
    cols = [(f"{s} step{'s' if s > 1 else ''}" + (" (default)" if s == default else ""), runs[s]["sets"]["generated"])
            for s in sorted(runs)]
    tg = t["generation"]
    cols.append((f"teacher {t['model']['label']} ({tg['sampler']}, {tg['steps']} steps, guidance {tg['guidance']:g})",
                 t["sets"]["generated"]))
    cols.append(("real validation images (floor)", d["sets"]["real"]))
    lines = [
        f"# Evaluation of {label}", "",
        f"`{d['model']['checkpoint']}`: {g['images']} images for the {g['prompts']} {g['split']} prompts (caption + "
        f"style), seeds from {g['seed']}, sampler `{g['sampler']}`, guidance {g['guidance']:g} fed to the network "
        f"(one row a step), Karras ramp from sigma 80 to {g.get('sigma_min', 0.0):g}; the same prompts, seeds, "
        f"reference set ({d['reference']['images']} train images) and domain classifier "
        f"`{d['classifier']['path']}` as the teacher's own `EVAL.md`, whose generated column is repeated here "
        "from its `eval.json`.", "",
        "| figure | " + " | ".join(name for name, _ in cols) + " | better |",
        "|---|" + "---|" * (len(cols) + 1),
    ]
    for key, name, fmt, better in FIGURES:
        lines.append(f"| {name} | " + " | ".join(_cell(fmt, c.get(key)) for _, c in cols) + f" | {better} |")
    lines += ["", "## Goals (issue 14)", "", "| goal | value | target | ratio to the teacher | met |",
              "|---|---|---|---|---|"]
    for x in goals(t, runs):
        name = x["figure"].replace("_", " ")
        lines.append(f"| {x['steps']} steps: {name} {x['op']} {x['factor']:g}x the teacher's | {x['value']:.3f} | "
                     f"{x['target']:.3f} | {x['ratio']:.3f} | {'yes' if x['met'] else '**no**'} |")
    lines.append("")
    if sweep:
        lines += ["## Choosing the defaults", "",
                  "Each row is the same evaluation with one setting changed (the same prompts and seeds). With one "
                  "image per prompt, FID over 223 images is noisy: small differences between rows are not "
                  "significant, and choosing the best row on this same set flatters it a little.", "",
                  "| setting | FID | KID x1000 | precision | recall | category adherence | style adherence |",
                  "|---|---|---|---|---|---|---|"]
        for name, r in sweep.items():
            s = r["sets"]["generated"]
            lines.append(f"| {name} | {s['fid']:.2f} | {s['kid']:.1f} | {s['precision']:.3f} | {s['recall']:.3f} | "
                         f"{s['category_adherence']:.3f} | {s['style_adherence']:.3f} |")
        lines.append("")
    if d.get("per_style"):
        lines += [f"Per prompted style at {default} steps (generated / real):", ""]
        lines += _per_style_table(d["per_style"])[2:]
    lines += ["Commands:", "", "```", *commands, "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", required=True)
    p.add_argument("--teacher", required=True, help="the teacher's eval.json")
    p.add_argument("--run", action="append", required=True, metavar="STEPS=EVAL.JSON")
    p.add_argument("--sweep", action="append", default=[], metavar="LABEL=EVAL.JSON")
    p.add_argument("--default", type=int, required=True, help="the shipped step count")
    p.add_argument("--command", action="append", default=[], help="a command that made the runs (repeatable)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    teacher = _load(a.teacher)
    runs = {int(k): _load(v) for k, v in (r.split("=", 1) for r in a.run)}
    sweep = {k: _load(v) for k, v in (r.split("=", 1) for r in a.sweep)}
    check_comparable(teacher, {**{str(k): v for k, v in runs.items()}, **sweep})
    a.out.write_text(markdown(a.label, teacher, runs, a.default, sweep, a.command), encoding="utf-8")
    for x in goals(teacher, runs):
        print(f"{'met' if x['met'] else 'NOT met'}: {x['steps']} steps {x['figure']} {x['value']:.3f} "
              f"{x['op']} {x['target']:.3f}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
