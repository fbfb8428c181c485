#!/usr/bin/env bash
# The fine-tuning story of the README: the bundled Fluent Emoji model fine-tuned on Noto Color Emoji
# (Apache-2.0, Debian's fonts-noto-color-emoji) for a short fixed budget on a CPU, with FD-EffNet against
# Noto before and after, and the run's sample grids from the same seeds at the start and the end.
#   sudo apt install fonts-noto-color-emoji
#   bash scripts/finetune_demo.sh                  # KIMG=6 by default; WORK=… to choose the folder
# Writes $WORK/summary.json (FD-EffNet, KID, precision, recall before and after; kimg; wall time).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK=${WORK:-$HOME/.cache/gan-studio/noto-demo}
KIMG=${KIMG:-6}
BASE=${BASE:-$ROOT/resources/models/fluent-emoji-64.safetensors}
N=${N:-1000}
mkdir -p "$WORK"
[ -d "$WORK/noto" ] || python "$ROOT/scripts/noto_emoji.py" "$WORK/noto"
rm -rf "$WORK/run"
start=$(date +%s)
# The recipe --preset auto picks for this many images (the one benchmarks/quality.py measured best); batch 8
# suits a CPU.
gan-studio-train --data "$WORK/noto" --crop pad --base "$BASE" --out "$WORK/run" \
    --kimg "$KIMG" --batch 8 --sample-kimg 1 --snap-kimg 1
wall=$(( $(date +%s) - start ))
latest=$(ls "$WORK"/run/checkpoints/network-*.safetensors | sort | tail -1)
gan-studio metrics --model "$BASE" --data "$WORK/run/dataset" --n "$N" > "$WORK/before.json"
gan-studio metrics --model "$latest" --data "$WORK/run/dataset" --n "$N" > "$WORK/after.json"
python - "$WORK" "$KIMG" "$wall" "$latest" <<'PY'
import json, sys
from pathlib import Path
work, kimg, wall, latest = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
grids = sorted((work / "run" / "samples").glob("samples-*.png"))
dataset_size = len(json.loads((work / "run" / "dataset" / "manifest.json").read_text())["images"])
preset = json.loads((work / "run" / "config.json").read_text())["preset"]
summary = {"kimg": kimg, "wall_s": wall, "checkpoint": latest, "dataset_size": dataset_size, "preset": preset,
           "before_grid": str(grids[0]),
           "after_grid": str(grids[-1]), "before": json.loads((work / "before.json").read_text()),
           "after": json.loads((work / "after.json").read_text())}
(work / "summary.json").write_text(json.dumps(summary, indent=2))
print(json.dumps({k: summary[k] for k in ("kimg", "wall_s")} |
                 {f"fd_effnet_{k}": summary[k]["fd_effnet"] for k in ("before", "after")}))
PY
