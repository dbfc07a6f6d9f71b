"""The prompt check on the content-policy test set (tests/policy_prompts/): calibrate, then measure.

    python -m bench.policy_prompts subjects EMOJI_JSON  # benign_subjects.txt from emoji-datasource's emoji.json
    python -m bench.policy_prompts calibrate   # thresholds.json (and anchors.npy) from the calibration split
    python -m bench.policy_prompts measure     # figures per split, policy, concept and trick

The semantic thresholds are set on the calibration split only: each concept's is just above the
highest score of any calibration prompt that should pass it (benign prompts for a default concept;
prompts showing no opt-in concept for an opt-in one), and at least FLOOR, so no calibration prompt
is affected by the semantic match; the held-out split is what docs/BENCHMARKS.md reports. Uses the default
model's own text encoder, as the gateway does.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from repository.reader import ModelRepository
from repository.text_encoder import TextEncoder
from services.common.policy.check import PromptCheck
from services.common.policy.concepts import DEFAULT_BLOCKED, FAMILY_EXTRA
from services.common.policy.lexicon import EXEMPLARS
from services.common.policy.normalize import normalize
from services.common.policy.policies import ContentPolicy, default_policy
from services.common.policy.semantic import (
    ANCHORS_FILE,
    BENIGN_SUBJECTS_FILE,
    THRESHOLDS_FILE,
    Calibration,
    SemanticMatcher,
    anchors_sha256,
    benign_anchors,
)
from services.common.settings import Settings

PROMPTS = Path(__file__).resolve().parents[1] / "tests" / "policy_prompts" / "prompts.jsonl"
MARGIN = 0.01
# No concept matches below this cosine, however few calibration prompts come near it: a threshold
# set by the benign prompts alone would be as low as the nearest of a few, and a new subject could
# pass it.
FLOOR = 0.35


def rows(path: Path = PROMPTS) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def encoder() -> TextEncoder:
    settings = Settings.from_env()
    return TextEncoder(ModelRepository(settings.model_repository).open(settings.default_model))


def family_policy() -> ContentPolicy:
    return ContentPolicy.of("family", {c: "REFUSE" for c in (*DEFAULT_BLOCKED, *FAMILY_EXTRA)})


def should_block(row: dict, policy: ContentPolicy) -> bool:
    refused = policy.refused()
    return row["concept"] in refused or bool(set(row["labels"]) & refused)


def calibrate(data: list[dict], enc: TextEncoder, anchors: np.ndarray) -> dict[str, float]:
    cal = [r for r in data if r["split"] == "calibration"]
    matcher = SemanticMatcher(enc.pooled, {c: 0.0 for c in EXEMPLARS}, anchors)
    scores = matcher.scores([normalize(r["text"]).text for r in cal])
    thresholds = {}
    for k, concept in enumerate(matcher.concepts):
        negatives = [i for i, r in enumerate(cal) if not r["concept"]
                     and (concept in DEFAULT_BLOCKED or not r["labels"])]
        thresholds[concept] = round(max(float(scores[negatives, k].max()) + MARGIN, FLOOR), 4)
    return thresholds


def measure(data: list[dict], check: PromptCheck) -> dict:
    out: dict = {}
    for policy in (default_policy(), family_policy()):
        start = time.perf_counter()
        verdicts = check.check_many([r["text"] for r in data], policy)
        seconds = time.perf_counter() - start
        for split in ("calibration", "held_out", "fresh", "final"):
            idx = [i for i, r in enumerate(data) if r["split"] == split]
            bad = [i for i in idx if should_block(data[i], policy)]
            good = [i for i in idx if not should_block(data[i], policy)]
            by_concept, by_trick, by_path = defaultdict(lambda: [0, 0]), defaultdict(lambda: [0, 0]), defaultdict(int)
            for i in bad:
                key = data[i]["concept"] or "+".join(sorted(set(data[i]["labels"]) & policy.refused()))
                hit = verdicts[i] is not None
                by_concept[key][0] += hit
                by_concept[key][1] += 1
                by_trick[data[i]["trick"]][0] += hit
                by_trick[data[i]["trick"]][1] += 1
                if hit:
                    by_path[verdicts[i].by] += 1
            affected = [data[i]["text"] for i in good if verdicts[i] is not None]
            out[f"{policy.name}/{split}"] = {
                "disallowed": len(bad), "blocked": sum(v[0] for v in by_concept.values()),
                "benign": len(good), "benign_affected": len(affected), "affected_examples": affected[:10],
                "missed_examples": [data[i]["text"] for i in bad if verdicts[i] is None][:15],
                "by_concept": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_concept.items())},
                "by_trick": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_trick.items())},
                "blocked_by": dict(by_path),
            }
        out[f"{policy.name}/ms_per_prompt"] = round(1000 * seconds / len(data), 3)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.policy_prompts", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("subjects", "calibrate", "measure"))
    parser.add_argument("emoji_json", nargs="?", type=Path, help="emoji-datasource's emoji.json (subjects)")
    args = parser.parse_args(argv)
    if args.command == "subjects":
        if args.emoji_json is None:
            parser.error("subjects needs the path of emoji.json")
        entries = json.loads(args.emoji_json.read_text())
        names = sorted({e["name"].lower().replace(":", "").replace(",", "") for e in entries if e.get("name")})
        BENIGN_SUBJECTS_FILE.write_text("\n".join(names) + "\n")
        print(f"{BENIGN_SUBJECTS_FILE.name}: {len(names)} subjects")
        return
    data = rows()
    enc = encoder()
    if args.command == "calibrate":
        texts = benign_anchors()
        anchors = np.concatenate([enc.pooled(list(texts[i:i + 256])) for i in range(0, len(texts), 256)])
        np.save(ANCHORS_FILE, anchors.astype(np.float16), allow_pickle=False)
        anchors = np.load(ANCHORS_FILE).astype(np.float32)  # as the gateway will read them
        thresholds = calibrate(data, enc, anchors)
        THRESHOLDS_FILE.write_text(json.dumps({
            "text_encoder_sha256": enc.file_sha256, "anchors_sha256": anchors_sha256(texts),
            "margin": MARGIN, "floor": FLOOR,
            "made_by": "python -m bench.policy_prompts calibrate (calibration split of tests/policy_prompts)",
            "thresholds": thresholds}, indent=2) + "\n")
        print(json.dumps(thresholds, indent=2))
        return
    calibration = Calibration.read()
    check = PromptCheck(SemanticMatcher(enc.pooled, calibration.thresholds, calibration.anchors))
    result = measure(data, check)
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
