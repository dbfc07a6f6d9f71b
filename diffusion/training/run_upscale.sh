#!/usr/bin/env bash
# Train both x4 upscalers at once on one machine, for the same wall-clock minutes
# (docs/MODEL.md, "The upscaler"): the diffusion net and the deterministic CNN baseline.
#
#   OUT=DIR bash diffusion/training/run_upscale.sh [MINUTES]
#
# Only what a model needs leaves the run: $OUT/sr_diff and $OUT/sr_cnn each get the EMA weights
# (upscaler_ema.safetensors), config.json, metrics.jsonl and samples.png; checkpoints and logs stay
# under $WORK. Needs python3 with torch, numpy, pillow and safetensors; nothing else is imported.
# Environment: DEVICE (cuda), DATA (.devcarry/upscale/emoji-128.npz), BATCH (128), LR (1e-3), CROP (128,
# whole images), THREADS (4), N_VAL (256: every held-out image), WORK (/tmp/atelier-upscale),
# PYTHON (python3), EXTRA (more trainer arguments).
set -uo pipefail
MINUTES=${1:-5.5}
OUT=${OUT:?set OUT to the folder that receives the trained models}
DEVICE=${DEVICE:-cuda}
DATA=${DATA:-.devcarry/upscale/emoji-128.npz}
BATCH=${BATCH:-128}
CROP=${CROP:-128}
THREADS=${THREADS:-4}
LR=${LR:-1e-3}
N_VAL=${N_VAL:-256}
WORK=${WORK:-/tmp/atelier-upscale}
PYTHON=${PYTHON:-python3}
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$WORK"
pids=()
for arch in diffusion cnn; do
  short=${arch/diffusion/diff}
  # shellcheck disable=SC2086  # EXTRA is a list of arguments
  "$PYTHON" -m diffusion.training.upscale_trainer --arch "$arch" --data "$DATA" \
    --run-dir "$WORK/sr_$short" --export-dir "$OUT/sr_$short" --device "$DEVICE" \
    --max-minutes "$MINUTES" --batch "$BATCH" --crop "$CROP" --lr "$LR" --n-val "$N_VAL" --threads "$THREADS" --fresh ${EXTRA:-} \
    > "$WORK/sr_$short.log" 2>&1 &
  pids+=($!)
done
status=0
for i in 0 1; do
  wait "${pids[$i]}" || status=1
done
for short in diff cnn; do
  echo "== sr_$short"
  tail -n 25 "$WORK/sr_$short.log"
  grep -h val_psnr "$WORK/sr_$short/metrics.jsonl" 2>/dev/null | tail -n 3
done
ls -l "$OUT"/sr_* 2>/dev/null
exit $status
