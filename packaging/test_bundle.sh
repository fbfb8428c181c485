#!/usr/bin/env bash
# Build the app (unless SKIP_BUILD=1), then check the frozen program works with no Python beside it, in two
# journeys a user takes:
#   1. the bundled model: the self-test (render, export, reload), `generate` (valid PNGs), and the window
#      offscreen, every panel, with a training run started from the Train panel;
#   2. a model of one's own: `train` two steps from scratch on the generated images, `generate` from its
#      checkpoint with truncation, and the PNG's recipe restores that seed, ψ, model and pixels.
# Prints build time, bundle size, the torch it carries and cold start time. KEEP_SHOTS=DIR keeps the frozen
# window's screenshots.
#   bash packaging/test_bundle.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
APP=dist/gan-studio/gan-studio
PY=build/package-venv/bin/python  # the build's own Python (the torch the app carries) checks the outputs
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    start=$(date +%s)
    bash packaging/build.sh
    echo "build: $(( $(date +%s) - start )) s"
fi
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
export QT_QPA_PLATFORM=offscreen GAN_STUDIO_HOME="$SCRATCH/home"

echo "== journey 1: the bundled model"
start=$(date +%s%N)
"$APP" --help > /dev/null
echo "cold start to --help: $(( ($(date +%s%N) - start) / 1000000 )) ms"
start=$(date +%s%N)
"$APP" --self-test
echo "self-test (start, load the bundled model, render, export, reload): $(( ($(date +%s%N) - start) / 1000000 )) ms"

"$APP" generate --seeds 0-15 --outdir "$SCRATCH/generated" > /dev/null
"$PY" - "$SCRATCH/generated" <<'PY'
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

# The window, offscreen: every panel, the dark theme (qdarkstyle through qtpy), a dataset import and a
# training run started from the Train panel, which runs the frozen program's own `train`.
"$APP" --screenshots "$SCRATCH/shots" > /dev/null
[ "$(ls "$SCRATCH"/shots/*.png | wc -l)" = 6 ] || { ls "$SCRATCH/shots"; exit 1; }
[ -z "${KEEP_SHOTS:-}" ] || cp -r "$SCRATCH/shots" "$KEEP_SHOTS"
echo "screenshots: 6 panels, including a training run started from the window"

echo "== journey 2: a model of one's own"
# The generated images make the dataset: 16 px, a narrow network, two steps of 8 images, one checkpoint.
"$APP" train --data "$SCRATCH/generated" --base scratch --out "$SCRATCH/run" --resolution 16 --kimg 0.016 \
    --batch 8 --channel-base 256 --channel-max 32 --z-dim 32 --w-dim 32 --snap-kimg 0.016 --events jsonl \
    > "$SCRATCH/events.jsonl"
FINISHED=$(tail -1 "$SCRATCH/events.jsonl")
MODEL=$("$PY" - "$FINISHED" <<'PY'
import json, sys
from pathlib import Path
event = json.loads(sys.argv[1])
assert event["event"] == "finished" and event["status"] == "completed", event
assert event["step"] == 2, f"trained {event['step']} steps, not 2"
assert Path(event["checkpoint"]).is_file(), event
print(event["checkpoint"])
PY
)
echo "train: 2 steps completed, checkpoint $(basename "$MODEL")"

"$APP" generate --model "$MODEL" --seeds 3 --trunc 0.7 --outdir "$SCRATCH/mine" > /dev/null
# What a drop on the window does with the PNG: read its recipe, find the model by its fingerprint, render.
PYTHONPATH="$ROOT" "$PY" - "$SCRATCH/mine/seed0003.png" "$MODEL" <<'PY'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from studio.engine.recipe import read_recipe
from studio.engine.session import Session
from studio.engine.state import RenderState

png, model = Path(sys.argv[1]), Path(sys.argv[2])
recipe = read_recipe(png)
assert recipe is not None, f"{png.name} carries no recipe"
state = RenderState.from_dict(recipe["state"])
assert (state.seed, state.psi) == (3, 0.7), state
session = Session(model)
assert (recipe["model_hash"], recipe["model_name"]) == (session.model_hash, model.stem), recipe
assert np.array_equal(np.asarray(Image.open(png)), session.render(state)), "the recipe restores other pixels"
print(f"generate: {png.name} of the new model carries its recipe (seed 3, psi 0.7), which restores its pixels")
PY

echo "bundle: $(du -sh dist/gan-studio | cut -f1) in dist/gan-studio, torch $("$PY" -c 'import torch; print(torch.__version__)')"
echo "bundle test passed"
