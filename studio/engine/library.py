"""The model library: every model the artist imported, stored once in our own format with a thumbnail.

A model's identity is its content: `model_hash` is the sha256 of the generator's weights and architecture
(`model_fingerprint`), and its id the first 16 hex digits. So a model keeps its id (and the recipes of its
images keep working) whichever file it came from, and however often it is imported, on any machine.
Layout under the root: `models/<id>.safetensors`, `thumbnails/<id>.png` (four seeds from its cover seed, 2×2) and
`index.json` (names, metadata, dates, hashes of the files each model was imported from). The bundled model
is registered in place, never copied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
from PIL import Image

from models.checkpoints import (
    CheckpointBundle,
    CheckpointError,
    detect_format,
    load_checkpoint,
    save_checkpoint,
)
from models.checkpoints.loader import file_sha256
from models.seeds import z_from_seed
from models.stylegan2 import Generator
from studio.engine.files import atomic_write, atomic_write_bytes
from studio.engine.imaging import grid, resize, to_uint8
from studio.engine.paths import bundled_model_path
from studio.engine.state import SEED_LIMIT

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]
INDEX_VERSION = 1
THUMBNAIL_TILE = 128
THUMBNAIL_COUNT = 4
_RECORD_KEYS = {"id", "name", "file", "thumbnail", "meta", "added", "bundled", "model_hash", "file_hashes"}


@dataclass
class ModelEntry:
    """One library model; `model_hash` is its full content hash (what recipes and direction caches record)."""

    id: str
    name: str
    path: Path
    thumbnail: Path
    meta: dict
    added: str
    bundled: bool
    model_hash: str = ""

    @property
    def cover_seed(self) -> int:
        """The seed the model opens on before it has an image of its own."""
        return cover_seed_of(self.meta.get("training"))


def cover_seed_of(training: object) -> int:
    """The publisher's pick of a seed from a model's training record (the bundled model's card names one), else
    0. Metadata from a file an artist brings is checked, never trusted."""
    seed = training.get("cover_seed", 0) if isinstance(training, dict) else 0
    return seed if type(seed) is int and 0 <= seed <= SEED_LIMIT else 0


def model_fingerprint(G: Generator) -> str:
    """sha256 of what decides the pixels: the generator's settings and every tensor, in a fixed order."""
    digest = hashlib.sha256(json.dumps(G.init_kwargs, sort_keys=True, default=str).encode())
    for name, tensor in sorted(G.state_dict().items()):
        data = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}:{tuple(data.shape)};".encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


class ModelLibrary:
    """The library under `root` (usually `user_data_dir() / "library"`); safe to call from several threads."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._models = self.root / "models"
        self._thumbnails = self.root / "thumbnails"
        self._index = self.root / "index.json"
        for folder in (self._models, self._thumbnails):
            folder.mkdir(parents=True, exist_ok=True)
        for stale in self._models.glob(".import-*"):  # left by an import that was killed mid-way
            stale.unlink(missing_ok=True)
        self._lock = threading.RLock()
        self._records: list[dict] = []
        self._load_index()

    # --- queries -----------------------------------------------------------------------------------------

    def entries(self) -> list[ModelEntry]:
        """All models, oldest first."""
        with self._lock:
            return [self._entry(r) for r in sorted(self._records, key=lambda r: r["added"])]

    def get(self, model_id: str) -> ModelEntry:
        with self._lock:
            return self._entry(self._record(model_id))

    # --- changes -----------------------------------------------------------------------------------------

    def import_model(
        self, path: str | os.PathLike[str], progress: Progress | None = None, name: str | None = None
    ) -> ModelEntry:
        """Store a checkpoint in the library, named `name` (default: the file's name); raises `CheckpointError`
        for a file it cannot load. A model already in the library keeps its name."""
        path = Path(path)
        name = (name or "").strip() or path.stem
        report = progress or (lambda done, total, message: None)
        report(0, 4, f"Checking {path.name}")
        detect_format(path)  # a missing, empty or non-checkpoint file fails here, before hashing
        file_hash = file_sha256(path)
        with self._lock:
            if known := self._find(file_hash=file_hash):
                report(4, 4, f"{known['name']} is already in the library")
                return self._entry(known)
        report(1, 4, f"Loading {path.name}")
        bundle = load_checkpoint(path, "cpu")
        model_hash = model_fingerprint(bundle.G_ema)
        model_id = model_hash[:16]
        with self._lock:
            if known := self._find(model_hash=model_hash):  # the same model from another file
                known["file_hashes"].append(file_hash)
                self._write_index()
                report(4, 4, f"{known['name']} is already in the library")
                return self._entry(known)
        report(2, 4, "Saving into the library")
        stored = self._models / f"{model_id}.safetensors"
        tmp = self._models / f".import-{uuid.uuid4().hex}.safetensors"
        try:
            save_checkpoint(tmp, bundle, torch.float32)
            report(3, 4, "Drawing the thumbnail")
            thumbnail = self._thumbnails / f"{model_id}.png"
            write_thumbnail(bundle, thumbnail)
            with self._lock:
                if known := self._find(model_hash=model_hash):  # imported meanwhile by another thread
                    return self._entry(known)
                os.replace(tmp, stored)
                record = self._new_record(bundle, model_hash, stored, name, [file_hash])
                self._records.append(record)
                self._write_index()
        finally:
            tmp.unlink(missing_ok=True)
        report(4, 4, f"Imported {name}")
        return self._entry(record)

    def rename(self, model_id: str, name: str) -> ModelEntry:
        name = name.strip()
        if not name:
            raise ValueError("a model name cannot be empty")
        with self._lock:
            record = self._record(model_id)
            record["name"] = name
            self._write_index()
            return self._entry(record)

    def delete(self, model_id: str) -> None:
        """Remove a model and its files (index first: a crash leaves an orphan file, never a broken entry)."""
        with self._lock:
            record = self._record(model_id)
            if record["bundled"]:
                raise ValueError(f"{record['name']} ships with GAN Studio and cannot be deleted")
            self._records.remove(record)
            self._write_index()
            entry = self._entry(record)
        entry.path.unlink(missing_ok=True)
        entry.thumbnail.unlink(missing_ok=True)

    def ensure_bundled(self) -> ModelEntry | None:
        """Register the model shipped with the app (in place, not copied); None when the app ships none.

        The file is read only when its path, size or modification time changed since the last start.
        """
        path = bundled_model_path()
        with self._lock:
            current = next((r for r in self._records if r["bundled"]), None)
            if path is None:
                if current is not None:
                    self._records.remove(current)
                    self._write_index()
                return None
            stat = path.stat()
            seen = {"file": str(path), "file_size": stat.st_size, "file_mtime": stat.st_mtime}
            if current is not None and all(current.get(k) == v for k, v in seen.items()):
                return self._entry(current)
        file_hash = file_sha256(path)
        with self._lock:
            if current is not None and file_hash in current["file_hashes"]:  # moved or touched, same file
                current.update(seen)
                self._write_index()
                return self._entry(current)
        bundle = load_checkpoint(path, "cpu")
        model_hash = model_fingerprint(bundle.G_ema)
        record = {**self._new_record(bundle, model_hash, path, path.stem, [file_hash], bundled=True), **seen}
        with self._lock:
            self._records = [r for r in self._records if not r["bundled"]] + [record]
            self._write_index()
        return self._entry(record)

    # --- internals ---------------------------------------------------------------------------------------

    def _new_record(
        self,
        bundle: CheckpointBundle,
        model_hash: str,
        file: Path,
        name: str,
        file_hashes: list[str],
        bundled: bool = False,
        added: str | None = None,
    ) -> dict:
        thumbnail = self._thumbnails / f"{model_hash[:16]}.png"
        if not thumbnail.exists():
            write_thumbnail(bundle, thumbnail)
        return {
            "id": model_hash[:16],
            "name": name,
            "file": str(file) if bundled else file.relative_to(self.root).as_posix(),
            "thumbnail": thumbnail.relative_to(self.root).as_posix(),
            "meta": bundle.meta.to_dict(),
            "added": added or datetime.now().isoformat(timespec="microseconds"),
            "bundled": bundled,
            "model_hash": model_hash,
            "file_hashes": file_hashes,
        }

    def _entry(self, record: dict) -> ModelEntry:
        return ModelEntry(
            id=record["id"],
            name=record["name"],
            path=self.root / record["file"],
            thumbnail=self.root / record["thumbnail"],
            meta=record["meta"],
            added=record["added"],
            bundled=record["bundled"],
            model_hash=record["model_hash"],
        )

    def _record(self, model_id: str) -> dict:
        for record in self._records:
            if record["id"] == model_id:
                return record
        raise KeyError(f"no model with id {model_id!r} in the library at {self.root}")

    def _find(self, *, file_hash: str = "", model_hash: str = "") -> dict | None:
        return next(
            (r for r in self._records if r["model_hash"] == model_hash or file_hash in r["file_hashes"]), None
        )

    def _load_index(self) -> None:
        if not self._index.exists():
            return
        try:
            records = json.loads(self._index.read_text(encoding="utf-8"))["models"]
            if not all(isinstance(r, dict) and _RECORD_KEYS <= r.keys() for r in records):
                raise ValueError("an entry lacks required fields")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            aside = self._index.with_name(f"index.json.damaged-{int(time.time())}")
            os.replace(self._index, aside)
            log.warning("library index %s unreadable (%s); kept as %s, rebuilt", self._index, exc, aside.name)
            self._records = self._rebuild()
            self._write_index()
            return
        self._records = [r for r in records if (self.root / r["file"]).exists()]
        for record in records:
            if record not in self._records:
                log.warning("library model %s lost its file %s; dropped", record["name"], record["file"])

    def _rebuild(self) -> list[dict]:
        """Recover the entries from the stored files themselves (names come from their source files)."""
        records = []
        for stored in sorted(self._models.glob("*.safetensors")):
            try:
                bundle = load_checkpoint(stored, "cpu")
            except CheckpointError as exc:
                log.warning("skipping %s while rebuilding the library index: %s", stored.name, exc)
                continue
            added = datetime.fromtimestamp(stored.stat().st_mtime).isoformat(timespec="microseconds")
            name = Path(bundle.meta.source_name).stem or stored.stem
            model_hash = model_fingerprint(bundle.G_ema)
            records.append(self._new_record(bundle, model_hash, stored, name, [], added=added))
        return records

    def _write_index(self) -> None:
        data = {"version": INDEX_VERSION, "models": self._records}
        atomic_write_bytes(self._index, json.dumps(data, indent=1).encode("utf-8"))


def write_thumbnail(bundle: CheckpointBundle, path: Path) -> None:
    """Four seeds from the model's cover seed in a 2×2 grid, so a model whose seed 0 is blank is not shown as
    one; each tile at most THUMBNAIL_TILE px (rendered no larger than needed)."""
    G = bundle.G_ema
    device = G.mapping.w_avg.device
    # StyleGAN3 has no early exit (no block resolutions): it renders in full.
    resolutions = getattr(G.synthesis, "block_resolutions", [G.img_resolution])
    stop_at = next((r for r in resolutions if r >= THUMBNAIL_TILE), G.img_resolution)
    first = cover_seed_of(bundle.meta.training)
    seeds = [(first + i) % (SEED_LIMIT + 1) for i in range(THUMBNAIL_COUNT)]
    z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds]).to(device)
    c = torch.zeros(len(z), G.c_dim, device=device)
    c[:, :1] = 1  # conditional models show class 0
    with torch.inference_mode():
        images = to_uint8(G.render(z, "z", c=c if G.c_dim else None, stop_at=stop_at))
    tile = min(THUMBNAIL_TILE, images.shape[1])
    sheet = grid([resize(im, (tile, tile)) for im in images], columns=2)
    atomic_write(path, lambda tmp: Image.fromarray(sheet).save(tmp, format="PNG"))
