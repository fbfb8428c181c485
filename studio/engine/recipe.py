"""The recipe embedded in every exported image: enough to restore the exact state by dropping the file back.

PNG files carry it as a tEXt chunk `gan-studio-recipe`; JPEG, WebP and TIFF as the EXIF ImageDescription,
prefixed with that key. The recipe is JSON: {state, model_id, model_hash, model_name, app_version}, where
`state` is `RenderState.to_dict()` (pass it to `RenderState.from_json` or `from_dict`). Optional keys say where
the image came from: `projection` (the file whose projection gave the state's latent) and `blend` (the two
parent models and the curve of a blended model, see `studio.engine.blending`).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from studio.engine.files import atomic_write, export_errors
from studio.engine.library import ModelEntry
from studio.engine.state import RenderState

log = logging.getLogger(__name__)

RECIPE_KEY = "gan-studio-recipe"
EXIF_DESCRIPTION = 0x010E
JPEG_EXIF_LIMIT = 65_000  # a JPEG APP1 segment holds at most 64 KiB

# Latents that came from projecting an image, with what the recipe records about it: the state only holds the
# latent, and every slider edit keeps it, so every export of those states names the projected file.
_projected_latents: dict[tuple[float, ...], dict] = {}


def app_version() -> str:
    try:
        return importlib.metadata.version("gan-studio")
    except importlib.metadata.PackageNotFoundError:  # running from a checkout
        return "dev"


def note_projection(latent: tuple[float, ...], origin: dict) -> None:
    """Remember that `latent` (a state's `w`) came from a projection described by `origin`."""
    _projected_latents[latent] = origin


def make_recipe(state: RenderState, entry: ModelEntry) -> dict:
    recipe = {
        "state": state.to_dict(),
        "model_id": entry.id,
        "model_hash": entry.model_hash,
        "model_name": entry.name,
        "app_version": app_version(),
    }
    if state.w is not None and (origin := _projected_latents.get(state.w)) is not None:
        recipe["projection"] = origin
    if (blend := entry.meta.get("blend")) is not None:  # a live blend (library models record it in "training")
        recipe["blend"] = blend
    return recipe


def save_image(image: Image.Image, path: Path, fmt: str, recipe: dict | None) -> None:
    """Write `image` as `fmt` (png, jpeg, webp, tiff) with `recipe` embedded; raises ExportError."""
    text = json.dumps(recipe, separators=(",", ":")) if recipe is not None else None
    options: dict = {}
    if fmt == "png":
        if text is not None:
            info = PngInfo()
            info.add_text(RECIPE_KEY, text)  # ASCII JSON, so a plain tEXt chunk
            options["pnginfo"] = info
    else:
        options = {"jpeg": {"quality": 95}, "webp": {"quality": 95}, "tiff": {"compression": "tiff_lzw"}}[fmt]
        if text is not None:
            exif = Image.Exif()
            exif[EXIF_DESCRIPTION] = f"{RECIPE_KEY}:{text}"
            data = exif.tobytes()
            if fmt != "jpeg" or len(data) <= JPEG_EXIF_LIMIT:
                options["exif"] = data
            else:
                log.warning(
                    "recipe of %s is too large for JPEG metadata (%d bytes); saved without it",
                    path,
                    len(data),
                )
    with export_errors(path):
        atomic_write(path, lambda tmp: image.save(tmp, format=fmt.upper(), **options))


def write_png_with_recipe(
    path: str | os.PathLike[str], image: np.ndarray, state: RenderState, model_entry: ModelEntry
) -> Path:
    """Write `image` (uint8 RGB) as a PNG at exactly `path`, atomically, with its recipe."""
    path = Path(path)
    save_image(Image.fromarray(image), path, "png", make_recipe(state, model_entry))
    return path


def read_recipe(path: str | os.PathLike[str]) -> dict | None:
    """The recipe embedded in an image file, or None when the file is not an image or carries none."""
    try:
        with Image.open(path) as im:
            text = getattr(im, "text", {}).get(RECIPE_KEY) if im.format == "PNG" else None
            if text is None:
                description = im.getexif().get(EXIF_DESCRIPTION)
                if isinstance(description, str) and description.startswith(f"{RECIPE_KEY}:"):
                    text = description[len(RECIPE_KEY) + 1 :]
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        log.info("no recipe read from %s: %s", path, exc)
        return None
    if text is None:
        return None
    try:
        recipe = json.loads(text)
    except json.JSONDecodeError as exc:
        log.warning("the recipe in %s is not valid JSON: %s", path, exc)
        return None
    return recipe if isinstance(recipe, dict) else None
