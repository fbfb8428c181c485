#!/usr/bin/env bash
# Build the app (unless SKIP_BUILD=1), then check the frozen program works with no Python beside it:
# the self-test, `generate` (valid PNGs), a short training run through its own `train` subcommand, and the
# window offscreen with a run started from it. Prints build time, bundle size and cold start time.
# KEEP_SHOTS=DIR keeps the frozen window's screenshots.
#   bash packaging/test_bundle.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
APP=dist/gan-studio/gan-studio
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    start=$(date +%s)
    bash packaging/build.sh
    echo "build: $(( $(date +%s) - start )) s"
fi
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export QT_QPA_PLATFORM=offscreen GAN_STUDIO_HOME="$SCRATCH/home"

start=$(date +%s%N)
"$APP" --help > /dev/null
echo "cold start to --help: $(( ($(date +%s%N) - start) / 1000000 )) ms"
start=$(date +%s%N)
"$APP" --self-test
echo "self-test (start, load the bundled model, render, export, reload): $(( ($(date +%s%N) - start) / 1000000 )) ms"

"$APP" generate --seeds 0-15 --outdir "$SCRATCH/generated" > /dev/null
build/package-venv/bin/python - "$SCRATCH/generated" <<'PY'
import sys
from pathlib import Path
from PIL import Image
pngs = sorted(Path(sys.argv[1]).glob("*.png"))
assert len(pngs) == 16, pngs
for png in pngs:
    with Image.open(png) as image:
        image.verify()
    with Image.open(png) as image:
        assert image.format == "PNG" and image.mode == "RGB" and image.size[0] == image.size[1] >= 16, image
        assert len(set(image.getdata())) > 50, f"{png} is nearly flat"
print(f"generate: {len(pngs)} valid PNGs of {image.size[0]} px")
PY

# The generated images make a dataset for a tiny run: 16 px, a narrow network, a few steps.
"$APP" train --data "$SCRATCH/generated" --base scratch --out "$SCRATCH/run" --resolution 16 --kimg 0.032 \
    --batch 8 --channel-base 256 --channel-max 32 --z-dim 32 --w-dim 32 --snap-kimg 0.016 --events jsonl \
    > "$SCRATCH/events.jsonl"
tail -1 "$SCRATCH/events.jsonl" | grep -q '"status": "completed"' || { tail -3 "$SCRATCH/events.jsonl"; exit 1; }
ls "$SCRATCH"/run/checkpoints/network-*.safetensors > /dev/null
echo "train: completed, $(grep -c '"event": "checkpoint"' "$SCRATCH/events.jsonl") checkpoints"
# The window, offscreen: every panel, the dark theme (qdarkstyle through qtpy), a dataset import and a
# training run started from the Train panel, which runs the frozen program's own `train`.
"$APP" --screenshots "$SCRATCH/shots" > /dev/null
[ "$(ls "$SCRATCH"/shots/*.png | wc -l)" = 6 ] || { ls "$SCRATCH/shots"; exit 1; }
[ -z "${KEEP_SHOTS:-}" ] || cp -r "$SCRATCH/shots" "$KEEP_SHOTS"
echo "screenshots: 6 panels, including a training run started from the window"
echo "bundle: $(du -sh dist/gan-studio | cut -f1) in dist/gan-studio"
echo "bundle test passed"
