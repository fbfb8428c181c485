#!/usr/bin/env bash
# Build the desktop app with PyInstaller: dist/gan-studio/gan-studio (one folder; on macOS also the .app).
#   bash packaging/build.sh
# It builds in its own virtual environment (build/package-venv) so the app carries only what it needs, and
# the torch it carries decides what the app runs on (the build's last line names it):
#   default                    PyTorch's CPU build, torch==2.13.0+cpu, about 1 GB, from PyTorch's index
#                              (TORCH_CPU_INDEX, default https://download.pytorch.org/whl/cpu) or a local folder
#                              of wheels pip already knows (PIP_FIND_LINKS). Where neither has it, the build
#                              falls back to torch==2.14.1 from PyPI and says so: on Linux and Windows that is
#                              the CUDA build, several GB to download and to ship.
#   TORCH="torch==2.14.1"      Linux/Windows CUDA build from PyPI: several GB (CUDA libraries included)
#   TORCH=…                    any torch pip can install, from the indexes pip is configured with
#   On macOS the default is PyPI's torch==2.14.1, the CPU + Apple MPS build.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON=${PYTHON:-python3}
TORCH_CPU="torch==2.13.0+cpu"
TORCH_PYPI="torch==2.14.1"
TORCH_CPU_INDEX=${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
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
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)
if [ -z "${TORCH:-}" ] && [ "$(uname)" = Darwin ]; then
    TORCH=$TORCH_PYPI
elif [ -z "${TORCH:-}" ]; then
    # Only the torch wheel comes from PyTorch's index (--no-deps: one page to fetch), with a short timeout and
    # one retry, so an index this machine cannot reach costs seconds, not pip's minutes of retries.
    if "${PIP[@]}" --no-deps --timeout 15 --retries 1 --extra-index-url "$TORCH_CPU_INDEX" "$TORCH_CPU"; then
        TORCH=$TORCH_CPU
    else
        TORCH=$TORCH_PYPI
        echo "build.sh: $TORCH_CPU is neither on $TORCH_CPU_INDEX (unreachable?) nor in a PIP_FIND_LINKS" \
            "folder; building with $TORCH from PyPI instead. On Linux and Windows that is the CUDA build:" \
            "several GB to download, and the app grows to several GB." >&2
    fi
fi
# torch's own dependencies and the app's come from the indexes pip is configured with.
"${PIP[@]}" "$TORCH" -r build/package-requirements.txt

QT_QPA_PLATFORM=offscreen "$PY" packaging/make_icons.py build/icons
GAN_STUDIO_ICONS="$ROOT/build/icons" "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/gan-studio.spec
if [ "$(uname)" = Linux ]; then
    # Desktop integration: the .desktop entry and its icon beside the program (install with
    # packaging/linux/install-desktop-entry.sh).
    cp packaging/linux/gan-studio.desktop build/icons/gan-studio.png dist/gan-studio/
    cp packaging/linux/install-desktop-entry.sh dist/gan-studio/
fi
echo "built dist/gan-studio in $(( $(date +%s) - start )) s, $(du -sh dist/gan-studio | cut -f1)," \
    "carrying torch $("$PY" -c 'import torch; print(torch.__version__)')"
