"""Every style an example in README or docs/ asks for is one the shipped models have.

`unknown style` is the first error a user copying an example would meet; the examples are checked
against the manifests under models/, never against a test model's styles.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `--style NAME` on a command line, `style="NAME"` in Python, `style: "NAME"` / `"style": "NAME"` in JS or JSON.
STYLE = re.compile(
    r"""--style[ =]([A-Za-z0-9_.-]+)"""
    r"""|\bstyle\s*=\s*["']([^"']+)["']"""
    r"""|["']?\bstyle["']?\s*:\s*["']([^"']+)["']"""
)


MODEL = re.compile(r"""--model[ =]([A-Za-z0-9_.-]+)|\bmodel\s*=\s*["']([^"']+)["']""")


def _shipped_styles() -> dict[str, set[str]]:
    """Model name -> the styles its shipped versions have."""
    styles: dict[str, set[str]] = {}
    for manifest in (ROOT / "models").glob("*/*/manifest.json"):
        m = json.loads(manifest.read_text())
        styles.setdefault(m["name"], set()).update(m.get("styles", []))
    return styles


def _examples(path: Path):
    """(line number, model named or None, style) for each style in the file's fenced code blocks
    and inline code."""
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        spans = [line] if fenced else re.findall(r"`([^`]+)`", line)
        for span in spans:
            model = MODEL.search(span)
            for match in STYLE.finditer(span):
                yield number, model and next(g for g in model.groups() if g), next(g for g in match.groups() if g)


def test_the_shipped_models_have_styles():
    assert {"twemoji", "noto"} <= _shipped_styles()["atelier-emoji"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_style_in_the_examples_is_a_shipped_style(doc):
    """A style is checked against the shipped model the example names (any shipped model when it
    names none); an example for a studio's own model (docs/MODEL.md's finetune) is its own."""
    shipped = _shipped_styles()
    every = set().union(*shipped.values())
    wrong = []
    for n, model, style in _examples(doc):
        if model is not None and model not in shipped or style.upper() == "NAME":
            continue
        if style not in (shipped[model] if model else every):
            wrong.append(f"{doc.relative_to(ROOT)}:{n}: {style} ({model or 'any shipped model'})")
    assert not wrong, f"styles the shipped models do not have: {wrong}"


def test_the_check_finds_an_unknown_style(tmp_path):
    doc = tmp_path / "X.md"
    doc.write_text('```python\nc.generate("a fox", style="google")\n```\nor `atelier generate x --style twitter`\n'
                   "`atelier generate x --model mine --style mine`\n")
    assert [(m, s) for _, m, s in _examples(doc)] == [(None, "google"), (None, "twitter"), ("mine", "mine")]


EXPORTED = re.compile(r"atelier export \S+ --name ([A-Za-z0-9_.-]+)")
# A model by name; `--model models/NAME/N` (a folder, as `train finetune` takes) is a path.
MODEL_NAME = re.compile(r"""--model[ =]([A-Za-z0-9_.-]+)(?![\w/.-])|\bmodel\s*=\s*["']([^"'/]+)["']""")


def _models_named(path: Path):
    """(line number, model) for each model an example of the file names."""
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        for span in [line] if fenced else re.findall(r"`([^`]+)`", line):
            for match in MODEL_NAME.finditer(span):
                yield number, next(g for g in match.groups() if g)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_model_in_the_examples_is_shipped_or_made_by_the_doc(doc):
    """A model an example names is one of models/, or one the same document exports first
    (`atelier export ... --name NAME`, as docs/MODEL.md's finetune does)."""
    made = set(EXPORTED.findall(doc.read_text()))
    known = set(_shipped_styles()) | made
    wrong = [f"{doc.relative_to(ROOT)}:{n}: {model}" for n, model in _models_named(doc)
             if model not in known and model.upper() not in {"NAME", "N"}]
    assert not wrong, f"models that are neither shipped nor exported by the document: {wrong}"


def test_the_check_finds_an_unknown_model(tmp_path):
    doc = tmp_path / "X.md"
    doc.write_text("`atelier generate x --model atelier-emoij`\n```sh\natelier export RUN --name mine --version 1\n"
                   "atelier generate x --model mine\n```\n")
    assert [m for _, m in _models_named(doc)] == ["atelier-emoij", "mine"]
    assert EXPORTED.findall(doc.read_text()) == ["mine"]
