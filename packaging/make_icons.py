"""Rasterise the app icon (resources/icons/gan-studio.svg) into what each platform's bundle wants:
PNG (Linux desktop entry), ICO (Windows) and ICNS (macOS). Run by build.sh; writes into the folder given."""

import sys
from io import BytesIO
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SVG = Path(__file__).resolve().parents[1] / "resources" / "icons" / "gan-studio.svg"


def rasterise(size: int) -> Image.Image:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    QSvgRenderer(str(SVG)).render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return Image.open(BytesIO(bytes(data))).convert("RGBA")


def main(out: Path) -> None:
    QGuiApplication([])  # QPainter needs an application object (offscreen is fine)
    out.mkdir(parents=True, exist_ok=True)
    large = rasterise(1024)
    rasterise(256).save(out / "gan-studio.png")
    large.save(out / "gan-studio.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    large.save(out / "gan-studio.icns")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
