"""The images a run trains on: its own prepared dataset in `RUN/dataset`, and whether its source changed since.

A run prepares a folder or zip of images into `RUN/dataset` once, when it starts. Given a dataset that is
already prepared (the app's saved datasets), it links that dataset's files into `RUN/dataset` instead: hard
links take no space (a copy where the filesystem has none), and a prepared dataset never rewrites a file in
place (store.py writes new names), so the links keep the images the run started with while the dataset grows.
A resumed run reads only `RUN/dataset`: new, removed or edited source files change neither its images nor the
sampler's order. `source_changes` says how the source differs now, so the artist can start a new run on it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from training.sources import list_sources
from training.store import MANIFEST_NAME, read_manifest, write_atomically

SOURCE_RECORD = "source.json"  # in the run folder: the source files as the run imported them


def is_prepared(data: Path) -> bool:
    return (data / MANIFEST_NAME).exists()


def link_prepared(source: Path, dest: Path) -> None:
    """Make `dest` a prepared dataset holding `source`'s images as they are now (files linked, else copied)."""
    manifest = read_manifest(source)
    if manifest is None:
        raise ValueError(f"{source} is not a prepared dataset")
    dest.mkdir(parents=True, exist_ok=True)
    names = [shard["file"] for shard in manifest.shards] + ([manifest.fingerprints] if manifest.fingerprints else [])
    for name in names:
        target = dest / name
        target.unlink(missing_ok=True)  # a leftover of an interrupted start
        try:
            os.link(source / name, target)
        except OSError:  # another filesystem, or one without hard links
            shutil.copyfile(source / name, target)
    # The manifest last, as store.py does: it is the commit point, naming files that are all in place.
    write_atomically(dest / MANIFEST_NAME, (source / MANIFEST_NAME).read_bytes())


def record_source(run_root: Path, data: Path) -> None:
    """Note the source files as they are when the run imports them (names, sizes, modification times)."""
    record = {"data": str(data), "files": _listing(run_root, data)}
    write_atomically(run_root / SOURCE_RECORD, json.dumps(record).encode("utf-8"))


def source_changes(run_root: Path, data: Path, prepared: Path) -> str | None:
    """How `data` differs from what the run prepared into `prepared` (None: it does not, or cannot be told).

    A prepared source is compared image by image (content hashes); a folder or zip by its files' names, sizes
    and modification times, against the record `record_source` made."""
    if not data.exists():
        return f"{data} is gone"
    if is_prepared(data):
        now, then = read_manifest(data), read_manifest(prepared)
        if now is None or then is None:
            return None
        return _describe({e["sha256"]: 0 for e in now.images}, {e["sha256"]: 0 for e in then.images}, "images")
    record_path = run_root / SOURCE_RECORD
    if not record_path.exists():  # a run started before runs recorded their source
        return None
    then = {name: tuple(stat) for name, stat in json.loads(record_path.read_text(encoding="utf-8"))["files"]}
    now = {name: tuple(stat) for name, stat in _listing(run_root, data)}
    return _describe(now, then, "files")


def _listing(run_root: Path, data: Path) -> list[list[Any]]:
    files, _ = list_sources(data, exclude=run_root)
    listing = []
    for source in files:
        try:
            stat = os.stat(source.path)  # an archive member: its archive's size and time
        except OSError:
            continue
        listing.append([source.name, [stat.st_size, stat.st_mtime_ns]])
    return listing


def _describe(now: dict[str, Any], then: dict[str, Any], what: str) -> str | None:
    added = len(now.keys() - then.keys())
    removed = len(then.keys() - now.keys())
    changed = sum(1 for key in now.keys() & then.keys() if now[key] != then[key])
    parts = [f"{n} {word}" for n, word in ((added, "added"), (removed, "removed"), (changed, "changed")) if n]
    return f"{', '.join(parts)} {what}" if parts else None
