#!/usr/bin/env bash
# Train the shipped emoji model end to end: VAE, then (latents are encoded by the UNet stage)
# the text-conditioned latent UNet. Resumable: rerun and each stage continues from its
# checkpoint. Usage: nohup diffusion/training/run_emoji.sh RUN_ROOT > RUN_ROOT/pipeline.log 2>&1 &
# Extra UNet arguments are read from RUN_ROOT/unet.args when the UNet stage starts.
set -u
ROOT=${1:-/work/runs/atelier-emoji-1}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PY:-$REPO/.venv/bin/python}
DATA=${DATA:-$HOME/.cache/atelier/datasets/emoji-32.npz}
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
mkdir -p "$ROOT"
cd "$REPO" || exit 1
echo "[$(date -u +%FT%TZ)] VAE stage"
if [ ! -f "$ROOT/vae/vae_ema.safetensors" ]; then
  $PY -m atelier_cli train vae --data "$DATA" --run-dir "$ROOT/vae" ${VAE_ARGS:-} || exit 1
fi
echo "[$(date -u +%FT%TZ)] UNet stage"
for attempt in 1 2 3 4 5; do
  UNET_ARGS=$(cat "$ROOT/unet.args" 2>/dev/null || true)
  if $PY -m atelier_cli train unet --data "$DATA" --vae-run "$ROOT/vae" --run-dir "$ROOT/unet" $UNET_ARGS; then
    echo "[$(date -u +%FT%TZ)] done"
    exit 0
  fi
  echo "[$(date -u +%FT%TZ)] UNet attempt $attempt failed; retrying in 60 s (resumes from checkpoint)"
  sleep 60
done
exit 1
