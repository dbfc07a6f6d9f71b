#!/usr/bin/env bash
# Ship a UNet run trained on a packaged model's VAE (`atelier train unet --vae-from models/atelier-emoji/N
# --keep-at 0.25 ...`) as the next version of atelier-emoji (or of $MODELS/$NAME), in one command:
#   1. package the run (reusing the VAE it was trained on) into models/atelier-emoji/VERSION;
#   2. evaluate the kept checkpoints (a quarter is required), then the packaged model with each as a
#      baseline column (EVAL.md, eval.json, eval_samples.png and contact_sheet.png land in the version folder);
#   3. export the ONNX serving files into the folder and hash-list everything in manifest.json.
# Usage: diffusion/training/ship_emoji.sh RUN_ROOT VERSION [VAE_MODEL]
#   RUN_ROOT holds unet/ (the run dir) and may hold notes.md (appended to the model card) and
#   command.txt (the training command recorded in the card). VAE_MODEL defaults to the VAE folder the run names.
set -euo pipefail
RUN=${1:?RUN_ROOT}
VERSION=${2:?VERSION}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
DATA=${DATA:-$HOME/.cache/atelier/datasets/emoji-32}   # the dataset's .npz, .card.json, .card.md, .contact.png
MODELS=${MODELS:-models}
NAME=${NAME:-atelier-emoji}
CLASSIFIER=${CLASSIFIER:-models/atelier-emoji/classifier}
OUT=$MODELS/$NAME/$VERSION
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
cd "$REPO"
atelier() { "$PY" -m atelier_cli "$@"; }

VAE_MODEL=${3:-$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["vae_run"])' \
  "$RUN/unet/checkpoints/latest.json")}
# Every checkpoint the run kept (`--keep-at`) as "LABEL PATH" lines: quarter, half, or the fraction.
KEPT=$(ls "$RUN"/unet/checkpoints/step_*.json | "$PY" -c '
import json, sys
names = {0.25: "quarter", 0.5: "half", 0.75: "three-quarters"}
for p in sys.stdin.read().split():
    f = json.load(open(p))["kept_fraction"]
    print(names.get(f, f"fraction-{f:g}"), p.replace(".json", ".safetensors"))')
grep -q "^quarter " <<< "$KEPT" || { echo "no checkpoint kept at a quarter of $RUN (train with --keep-at 0.25)" >&2; exit 1; }
PACKAGE_ARGS=(--root "$RUN" --out "$OUT" --vae-from "$VAE_MODEL" --data-card "$DATA.card.json" --contact "$DATA.contact.png")
[ -f "$RUN/notes.md" ] && PACKAGE_ARGS+=(--notes "$RUN/notes.md")
[ -f "$RUN/command.txt" ] && PACKAGE_ARGS+=(--command-line "$(cat "$RUN/command.txt")")

echo "[$(date -u +%FT%TZ)] package $RUN -> $OUT (VAE of $VAE_MODEL)"
atelier train package "${PACKAGE_ARGS[@]}"
cp "$DATA.card.md" "$OUT/DATA_CARD.md"

# Kept checkpoints can be evaluated while the run goes on; an existing report of the same checkpoint is kept.
BASELINES=()
while read -r LABEL CKPT; do
  if ! grep -qs "\"checkpoint\": \"$CKPT\"" "$RUN/eval-$LABEL/eval.json"; then
    echo "[$(date -u +%FT%TZ)] evaluate the $LABEL checkpoint $CKPT"
    atelier eval model "$CKPT" --out "$RUN/eval-$LABEL" --label "$LABEL" --no-contact-sheet --threads 2 \
      --classifier "$CLASSIFIER" --data "$DATA.npz"
  fi
  BASELINES+=(--baseline "$LABEL=$RUN/eval-$LABEL/eval.json")
done <<< "$KEPT"
echo "[$(date -u +%FT%TZ)] evaluate $OUT"
atelier eval model "$OUT" --out "$OUT" --label "$NAME/$VERSION" \
  "${BASELINES[@]}" --threads 2 --classifier "$CLASSIFIER" --data "$DATA.npz"

echo "[$(date -u +%FT%TZ)] export the serving files"
atelier export "$OUT" --name "$NAME" --version "$VERSION" --out "$MODELS" --tiling --optimize \
  --include-source --overwrite
echo "[$(date -u +%FT%TZ)] shipped $OUT"
