#!/usr/bin/env bash
# Build the desktop app with PyInstaller: dist/gan-studio/gan-studio (one folder; on macOS also the .app).
#   bash packaging/build.sh
# It builds in its own virtual environment (build/package-venv) so the app carries only what it needs, and
# the torch it carries decides what the app runs on:
#   TORCH="torch==2.13.0+cpu"  (default) CPU build, about 1 GB. Where pip cannot find that wheel, add
#                              PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
#   TORCH="torch==2.14.1"      Linux/Windows CUDA build from PyPI: several GB (CUDA libraries included)
#   On macOS the PyPI wheel is the CPU + Apple MPS build: TORCH="torch==2.14.1".
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON=${PYTHON:-python3}
TORCH=${TORCH:-torch==2.13.0+cpu}
VENV=build/package-venv
BIN="$VENV/bin"; [ -d "$VENV/Scripts" ] && BIN="$VENV/Scripts"

start=$(date +%s)
[ -x "$BIN/python" ] || [ -x "$BIN/python.exe" ] || "$PYTHON" -m venv "$VENV"
PY="$BIN/python"
# The runtime dependencies from pyproject.toml, but torch as chosen above and without torchvision, which
# the app does not import; PyInstaller from the `package` extra.
"$PY" - > build/package-requirements.txt <<'PY'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for spec in project["dependencies"] + project["optional-dependencies"]["package"]:
    if re.split(r"[<>=!~ \[;]", spec, maxsplit=1)[0] not in ("torch", "torchvision"):
        print(spec)
PY
"$PY" -m pip install --quiet --disable-pip-version-check "$TORCH" -r build/package-requirements.txt

QT_QPA_PLATFORM=offscreen "$PY" packaging/make_icons.py build/icons
GAN_STUDIO_ICONS="$ROOT/build/icons" "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/gan-studio.spec
if [ "$(uname)" = Linux ]; then
    # Desktop integration: the .desktop entry and its icon beside the program (install with
    # packaging/linux/install-desktop-entry.sh).
    cp packaging/linux/gan-studio.desktop build/icons/gan-studio.png dist/gan-studio/
    cp packaging/linux/install-desktop-entry.sh dist/gan-studio/
fi
echo "built dist/gan-studio in $(( $(date +%s) - start )) s, $(du -sh dist/gan-studio | cut -f1)"
