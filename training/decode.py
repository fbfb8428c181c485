"""Turn the bytes of one image file into oriented RGB/RGBA pixels, or a specific reason why not.

Every failure becomes an `ImageRejected` whose message is the short reason the import report shows next
to the file name, so that one bad file among thousands never stops an import.
"""

from __future__ import annotations

import codecs
import io
import math
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageColor, ImageOps

AlphaMode = Literal["composite", "keep"]
Colour = tuple[int, int, int]

WHITE: Colour = (255, 255, 255)
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)
_EXTENSION_HINTS = {
    ".svg": "vector image: export it as PNG first",
    ".heic": "convert it to JPEG or PNG first",
    ".heif": "convert it to JPEG or PNG first",
    ".zip": "a zip archive inside a zip archive: extract it first",
}
_FORMAT_NAMES = {"PNG": "PNG", "JPEG": "JPEG", "GIF": "GIF", "BMP": "BMP", "TIFF": "TIFF", "WEBP": "WebP"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_ROTATING_ORIENTATIONS = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


class ImageRejected(Exception):
    """A file that cannot join a dataset; `str(exc)` is the reason shown to the user."""


@dataclass(frozen=True)
class DecodedImage:
    """Pixels of one file, upright; `image` may be smaller than `original_size` when decoded with `draft`."""

    image: Image.Image  # mode RGB, or RGBA when alpha is kept
    original_size: tuple[int, int]  # (width, height) of the full-size upright image


def parse_colour(value: str | tuple[int, ...]) -> Colour:
    """Accept `"white"`, `"#102030"` or `(16, 32, 48)`: the forms a GUI colour picker or a CLI flag gives."""
    rgb = ImageColor.getrgb(value) if isinstance(value, str) else tuple(value)
    if len(rgb) < 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in rgb[:3]):
        raise ValueError(f"not a colour: {value!r} (give a name, #rrggbb or three integers 0-255)")
    return rgb[0], rgb[1], rgb[2]


def unsupported_type_reason(extension: str) -> str:
    """The reason for a file whose extension is not an image format the importer reads."""
    if not extension:
        return "unsupported file type (no extension)"
    hint = _EXTENSION_HINTS.get(extension.lower())
    return f'unsupported file type "{extension}"' + (f" ({hint})" if hint else "")


def decode_image(
    data: bytes,
    *,
    alpha: AlphaMode = "composite",
    background: Colour = WHITE,
    max_pixels: int | None = None,
    draft_short_side: int | None = None,
) -> DecodedImage:
    """Decode, orient (EXIF) and normalise one image; raise ImageRejected with the reason otherwise.

    `draft_short_side` lets JPEG decode at a reduced scale (the DCT does it almost for free) as long as the
    short side stays at least that long: preparing 12-megapixel photos at 256 px is then several times faster.
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(_describe_non_image(data))
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    with warnings.catch_warnings():
        # Pillow's warnings (bombs, odd EXIF) would only be noise: every outcome is reported per file.
        warnings.simplefilter("ignore")
        try:
            image = Image.open(io.BytesIO(data), formats=[fmt])
        except Image.DecompressionBombError:
            pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)  # Pillow refuses outright above twice its limit
            raise ImageRejected(_too_large(_declared_size(fmt, data), min(limit, pillow_limit))) from None
        except Exception as exc:
            raise ImageRejected(_damaged(fmt, data, exc)) from None
        width, height = image.size
        if width * height > limit:
            raise ImageRejected(_too_large((width, height), limit))
        try:
            orientation = image.getexif().get(0x0112, 1)
            if draft_short_side and fmt == "JPEG" and min(width, height) > draft_short_side:
                scale = draft_short_side / min(width, height)
                image.draft(image.mode, (math.ceil(width * scale), math.ceil(height * scale)))
            image.load()
            if orientation != 1:
                image = ImageOps.exif_transpose(image)
            image = _normalise(image, alpha, background)
        except ImageRejected:
            raise
        except MemoryError:
            raise ImageRejected(f"not enough memory to decode {width}×{height} pixels") from None
        except Exception as exc:
            raise ImageRejected(_damaged(fmt, data, exc)) from None
    upright = (height, width) if orientation in _ROTATING_ORIENTATIONS else (width, height)
    return DecodedImage(image, upright)


def sniff_format(data: bytes) -> str | None:
    """The Pillow format name the file's signature announces, whatever its extension says."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM"):
        return "BMP"
    return None


def composite(image: Image.Image, background: Colour) -> Image.Image:
    """Flatten an RGBA image onto an opaque colour (where alpha is 0 the result is exactly `background`)."""
    base = Image.new("RGBA", image.size, (*background, 255))
    return Image.alpha_composite(base, image).convert("RGB")


def _normalise(image: Image.Image, alpha: AlphaMode, background: Colour) -> Image.Image:
    if image.mode in _SIXTEEN_BIT_MODES:
        image = _to_8bit(image)
    if image.mode == "F":
        raise ImageRejected("32-bit floating-point image (not supported; save it as 8- or 16-bit)")
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    try:
        image = image.convert("RGBA" if has_alpha or alpha == "keep" else "RGB")
    except ValueError:
        raise ImageRejected(f"unsupported colour mode {image.mode}") from None
    if has_alpha and alpha == "composite":
        image = composite(image, background)
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit samples (0-65535) to 8 bits with rounding; a plain convert("L") would clip them."""
    samples = np.clip(np.asarray(image), 0, 65535).astype(np.uint32)
    return Image.fromarray(((samples * 255 + 32767) // 65535).astype(np.uint8), "L")


def _too_large(size: tuple[int, int] | None, limit: int) -> str:
    what = f"{size[0]}×{size[1]} pixels" if size else "its size"
    bound = f"{round(limit / 1e6)}-megapixel" if limit >= 1_000_000 else f"{limit:,}-pixel"
    return f"image too large: {what} exceeds the {bound} limit"


def _declared_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    """The size in the header, read by the format plugin itself (Image.open refuses to report it)."""
    try:
        return Image.OPEN[fmt][0](io.BytesIO(data)).size
    except Exception:
        return None


def _damaged(fmt: str, data: bytes, exc: Exception) -> str:
    name = _FORMAT_NAMES[fmt]
    if _is_truncated(fmt, data) or "truncated" in str(exc).lower():
        return f"truncated {name}"
    detail = str(exc) if str(exc) and not isinstance(exc, Image.UnidentifiedImageError) else ""
    return f"damaged {name}" + (f" ({detail})" if detail else "")


def _is_truncated(fmt: str, data: bytes) -> bool:
    """Whether the file ends before its format says it should (the common 'copy interrupted' case)."""
    tail = data.rstrip(b"\x00")
    if fmt == "PNG":
        return b"IEND" not in tail[-12:]
    if fmt == "JPEG":
        return not tail.endswith(b"\xff\xd9")
    if fmt == "GIF":
        return not tail.endswith(b";")
    if fmt == "WEBP":
        return int.from_bytes(data[4:8], "little") + 8 > len(data)
    if fmt == "BMP":
        return int.from_bytes(data[2:6], "little") > len(data)
    return False


def _describe_non_image(data: bytes) -> str:
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc", b"avif"):
        return "HEIC/AVIF image (not supported; convert it to JPEG or PNG)"
    if data.startswith(b"%PDF"):
        return "not an image (looks like a PDF document)"
    if data.startswith(b"PK\x03\x04"):
        return "not an image (looks like a zip archive)"
    if _looks_like_text(data[:4096]):
        return "not an image (looks like text)"
    return "not an image (unrecognised content)"


def _looks_like_text(sample: bytes) -> bool:
    if b"\x00" in sample:
        return False
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return printable >= 0.95 * len(text)
