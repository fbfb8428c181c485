"""Render Noto Color Emoji (Apache-2.0; Debian's `fonts-noto-color-emoji`) into one RGBA PNG per emoji.

    python scripts/noto_emoji.py OUT_DIR [--font /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf]

The font's colour bitmaps come in one size (109 px em, 136 × 128 px), so that is the size drawn. Single code
points of the emoji blocks are tried; those the font lacks draw its blank "missing glyph" and are skipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
BITMAP_SIZE = 109  # the font's only bitmap strike
CANVAS = (136, 128)
BLOCKS = [(0x2600, 0x27BF), (0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF),
          (0x1FA70, 0x1FAFF)]


def draw(font: ImageFont.FreeTypeFont, char: str) -> Image.Image:
    image = Image.new("RGBA", CANVAS, (0, 0, 0, 0))
    ImageDraw.Draw(image).text((0, 0), char, font=font, embedded_color=True)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--font", default=FONT)
    args = parser.parse_args()
    font = ImageFont.truetype(args.font, BITMAP_SIZE)
    missing = draw(font, "\ue000").tobytes()  # a private-use code point: the font's missing-glyph drawing
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    for first, last in BLOCKS:
        for code in range(first, last + 1):
            image = draw(font, chr(code))
            if image.getbbox() is None or image.tobytes() == missing:
                continue
            image.save(args.out / f"u{code:05x}.png")
            written += 1
    print(f"wrote {written} emoji to {args.out}")


if __name__ == "__main__":
    main()
