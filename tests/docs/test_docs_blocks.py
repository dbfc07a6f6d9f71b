"""The docs tests' conventions (docs/TESTING.md, "Docs that run"): every fenced block of README.md
and docs/*.md says what it is, and a block marked `<!-- not run: WHY -->` is checked command by
command (tests/docs/checks.py). The blocks that run are run against the shipped model by
tests/clients/test_docs_examples.py.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.docs.blocks import ROOT, Block, blocks_of, commands, documents, every_block
from tests.docs.checks import check

BLOCKS = every_block()


def _where(block: Block) -> str:
    return block.where


def test_every_block_says_what_it_is():
    """A fence without a language is refused (a reader cannot tell a command from its output), and
    a `not run` marker gives its reason and sits on a block that would otherwise run."""
    unsaid = [b.where for b in BLOCKS if b.kind is None]
    assert not unsaid, ("fenced blocks without a language: write ```sh (run by tests/docs), ```python, ```js, "
                        f"or ```text for output and diagrams: {unsaid}")
    bad_markers = [b.where for b in BLOCKS if b.not_run is not None and (not b.not_run or b.kind == "text")]
    assert not bad_markers, f"`<!-- not run: WHY -->` needs a reason and a sh/python/js block: {bad_markers}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.not_run is not None and b.kind], ids=_where)
def test_a_block_that_cannot_run_is_checked(block):
    if block.kind == "sh":
        problems = [p for c in commands(block.text) for p in check(c)]
    elif block.kind == "python":
        compile(block.text, block.where, "exec")
        problems = []
    else:
        done = subprocess.run(["node", "--check", "-"], input=block.text, capture_output=True, text=True, timeout=30)
        problems = [] if done.returncode == 0 else [done.stderr]
    assert not problems, f"{block.where} (not run: {block.not_run}): {problems}"


def test_the_checks_catch_what_they_are_for():
    assert check("atelier generate x --stile twemoji")  # a flag that does not exist
    assert check("atelier generate x --steps -1")  # a value out of range
    assert check("atelier train vea|unet --data x.npz")  # a subcommand that does not exist
    assert check("atelier train vae --dta x.npz [--steps N]")  # a usage summary's unknown flag
    assert check("python -m bench.batching --wave 6")
    assert check("docker build -f deploy/docker/nothing.Dockerfile .")
    assert check("grpcurl -d '{\"prompt\": 1, \"colour\": 2}' 127.0.0.1:50051 atelier.v1.Generation/Submit")
    assert check("curl -d '{\"prompt\": 1}' http://127.0.0.1:8080/v1/jobs")  # not a GenerateRequest
    assert check("curl http://127.0.0.1:8080/v1/job/JOB_ID")  # no such route
    assert check("curl -X DELETE http://127.0.0.1:8080/v1/jobs/JOB_ID")  # no route for the method
    assert not check("curl -sN http://127.0.0.1:8080/v1/jobs/JOB_ID/events")
    assert check("frobnicate --all")  # a program without a check
    assert not check("atelier train vae --data emoji-32.npz --run-dir RUN/vae [--steps N]")
    assert not check("atelier generate 'cat face' --style twemoji --seed 7 --out out/")


def test_markers_and_languages_are_read(tmp_path):
    doc = tmp_path / "X.md"
    doc.write_text("```sh\natelier models\n```\n<!-- not run: trains for hours -->\n```sh\natelier train vae \\\n"
                   "  --data x.npz   # comment\n```\n```\nsomething\n```\n```text\nout\n```\n")
    found = blocks_of(doc)
    assert [(b.kind, b.runs, b.not_run) for b in found] == [
        ("sh", True, None), ("sh", False, "trains for hours"), (None, False, None), ("text", False, None)]
    assert commands(found[1].text) == ["atelier train vae    --data x.npz   # comment"]


def test_blocks_found_in_every_document():
    counts = {str(p.relative_to(ROOT)): len(blocks_of(p)) for p in {b.path for b in BLOCKS}}
    assert counts.get("README.md") and counts.get("docs/API.md"), json.dumps(counts)


def _mentions(path):
    """(line, span) for each `atelier ...` command named in the prose's inline code."""
    fenced = False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield from ((number, span) for span in re.findall(r"`([^`]+)`", line)
                        if re.match(r"(\.venv/bin/)?atelier [a-z]", span))


@pytest.mark.parametrize("doc", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_commands_named_in_the_prose_exist(doc):
    """`atelier webhooks rotate-secret`, `atelier eval model --guidance G` in a sentence: each
    subcommand and flag it names exists (its other arguments may be left out)."""
    problems = [f"{doc.relative_to(ROOT)}:{n}: {p}" for n, span in _mentions(doc) for p in check(span, mention=True)]
    assert not problems, problems


def test_a_mention_is_checked_for_names_only():
    assert not check("atelier webhooks", mention=True)
    assert not check("atelier eval model --guidance G", mention=True)
    assert check("atelier webhook", mention=True)
    assert check("atelier eval model --guidence 3", mention=True)
