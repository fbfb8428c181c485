#!/usr/bin/env bash
# Add GAN Studio to the desktop's application menu (for this user), pointing at this folder's program.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
APPS="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
ICONS="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$APPS" "$ICONS"
cp "$HERE/gan-studio.png" "$ICONS/gan-studio.png"
sed "s|^Exec=gan-studio|Exec=\"$HERE/gan-studio\"|" "$HERE/gan-studio.desktop" > "$APPS/gan-studio.desktop"
echo "installed $APPS/gan-studio.desktop"
