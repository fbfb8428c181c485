"""The model library with real checkpoint files: import, dedupe, rename, delete, thumbnails, bundled model."""

# Fixtures imported from engine_support reappear as test parameters.
# ruff: noqa: F811

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from models.seeds import z_from_seed
from studio.engine import library as library_module
from studio.engine.imaging import to_uint8
from studio.engine.library import ModelEntry, ModelLibrary, write_thumbnail
from studio.engine.selftest import make_random_model
from studio.engine.state import SEED_LIMIT
from tests.studio.engine_support import model_file  # noqa: F401


def test_import_stores_our_format_with_a_thumbnail(model_file: Path, tmp_path: Path):
    library = ModelLibrary(tmp_path / "lib")
    steps = []
    entry = library.import_model(model_file, progress=lambda done, total, msg: steps.append((done, total)))
    assert steps[0] == (0, 4) and steps[-1] == (4, 4)
    assert entry.path == tmp_path / "lib" / "models" / f"{entry.id}.safetensors" and entry.path.exists()
    assert len(entry.id) == 16 and entry.model_hash.startswith(entry.id)
    assert entry.name == "tiny" and not entry.bundled and entry.meta["resolution"] == 32
    assert load_checkpoint(entry.path).meta.resolution == 32
    with Image.open(entry.thumbnail) as thumb:
        assert thumb.size == (64, 64)  # 2×2 tiles of the 32 px model
        pixels = np.asarray(thumb.convert("RGB"))
    assert not np.array_equal(pixels[:32, :32], pixels[:32, 32:])  # seeds 0 and 1 differ
    assert library.get(entry.id) == entry and library.entries() == [entry]


def test_importing_the_same_file_twice_returns_the_existing_entry(model_file: Path, tmp_path: Path):
    library = ModelLibrary(tmp_path / "lib")
    first = library.import_model(model_file)
    copy = shutil.copy(model_file, tmp_path / "renamed copy.safetensors")
    assert library.import_model(copy) == first
    assert library.import_model(first.path, name="another name") == first  # the stored file; its name stays
    bundle = load_checkpoint(model_file)
    bundle.meta.source_name = "resaved.safetensors"
    resaved = tmp_path / "resaved.safetensors"
    save_checkpoint(resaved, bundle)  # other bytes, same weights: the same model
    assert resaved.read_bytes() != model_file.read_bytes()
    assert library.import_model(resaved) == first
    assert len(library.entries()) == 1
    assert len(list((tmp_path / "lib" / "models").iterdir())) == 1


def test_different_models_are_kept_apart_and_sorted_by_date(model_file: Path, tmp_path: Path):
    library = ModelLibrary(tmp_path / "lib")
    a = library.import_model(model_file)
    b = library.import_model(make_random_model(tmp_path / "other.safetensors", seed=1), name=" faces · 4.01 kimg ")
    assert a.id != b.id and [e.id for e in library.entries()] == [a.id, b.id]
    assert (a.name, b.name) == ("tiny", "faces · 4.01 kimg")  # the file's name unless named on import
    reopened = ModelLibrary(tmp_path / "lib")
    assert reopened.entries() == library.entries()


def test_rename_and_delete(model_file: Path, tmp_path: Path):
    library = ModelLibrary(tmp_path / "lib")
    entry = library.import_model(model_file)
    assert library.rename(entry.id, "  Portraits ").name == "Portraits"
    assert ModelLibrary(tmp_path / "lib").get(entry.id).name == "Portraits"
    with pytest.raises(ValueError, match="empty"):
        library.rename(entry.id, "   ")
    library.delete(entry.id)
    assert library.entries() == [] and not entry.path.exists() and not entry.thumbnail.exists()
    with pytest.raises(KeyError, match="no model"):
        library.get(entry.id)
    assert ModelLibrary(tmp_path / "lib").entries() == []
    # deleting frees the file for a fresh import
    assert library.import_model(model_file).id == entry.id


def test_bad_files_raise_checkpoint_error_unchanged(tmp_path: Path):
    library = ModelLibrary(tmp_path / "lib")
    image = tmp_path / "cat.pkl"
    Image.new("RGB", (4, 4)).save(image, format="PNG")
    with pytest.raises(CheckpointError, match="cat.pkl.*PNG image"):
        library.import_model(image)
    with pytest.raises(CheckpointError, match="does not exist"):
        library.import_model(tmp_path / "missing.pkl")
    assert library.entries() == [] and list((tmp_path / "lib" / "models").iterdir()) == []


def test_a_damaged_index_is_set_aside_and_rebuilt(model_file: Path, tmp_path: Path):
    library = ModelLibrary(tmp_path / "lib")
    entry = library.import_model(model_file)
    (tmp_path / "lib" / "index.json").write_text("{ truncated")
    rebuilt = ModelLibrary(tmp_path / "lib").entries()
    assert [(e.id, e.name, e.path) for e in rebuilt] == [(entry.id, "tiny", entry.path)]
    assert list((tmp_path / "lib").glob("index.json.damaged-*"))
    assert json.loads((tmp_path / "lib" / "index.json").read_text())["models"][0]["id"] == entry.id


def test_an_entry_whose_file_vanished_is_dropped(model_file: Path, tmp_path: Path):
    library = ModelLibrary(tmp_path / "lib")
    entry = library.import_model(model_file)
    entry.path.unlink()
    assert ModelLibrary(tmp_path / "lib").entries() == []


def test_bundled_model_is_registered_in_place(model_file: Path, tmp_path: Path, monkeypatch):
    shipped = tmp_path / "resources" / "starter.safetensors"
    shipped.parent.mkdir()
    shutil.copy(model_file, shipped)
    monkeypatch.setattr(library_module, "bundled_model_path", lambda: shipped)
    library = ModelLibrary(tmp_path / "lib")
    entry = library.ensure_bundled()
    assert entry.bundled and entry.path == shipped and entry.name == "starter"
    assert list((tmp_path / "lib" / "models").iterdir()) == []  # not copied
    assert library.ensure_bundled() == entry and len(library.entries()) == 1
    assert ModelLibrary(tmp_path / "lib").ensure_bundled() == entry
    with pytest.raises(ValueError, match="ships with GAN Studio"):
        library.delete(entry.id)
    shipped.write_bytes(make_random_model(tmp_path / "v2.safetensors", seed=3).read_bytes())  # an app update
    updated = library.ensure_bundled()
    assert updated.id != entry.id and [e.id for e in library.entries()] == [updated.id]
    monkeypatch.setattr(library_module, "bundled_model_path", lambda: None)
    assert library.ensure_bundled() is None and library.entries() == []


def with_cover_seed(source: Path, target: Path, cover_seed: object) -> Path:
    bundle = load_checkpoint(source)
    bundle.meta.training = {**bundle.meta.training, "cover_seed": cover_seed}
    save_checkpoint(target, bundle)
    return target


def test_a_model_opens_on_its_cover_seed_and_hostile_values_fall_back_to_zero(model_file: Path, tmp_path: Path):
    library = ModelLibrary(tmp_path / "lib")
    assert library.import_model(model_file).cover_seed == 0  # no pick: seed 0, as always
    other = make_random_model(tmp_path / "other.safetensors", seed=3)
    picked = library.import_model(with_cover_seed(other, tmp_path / "picked.safetensors", 8))
    assert picked.cover_seed == 8 and ModelLibrary(tmp_path / "lib").get(picked.id).cover_seed == 8
    entry = picked.__dict__
    for hostile in (-1, 2**31, 2.5, True, "8", None, [8], {"seed": 8}):
        meta = {**entry["meta"], "training": {"cover_seed": hostile}}
        assert ModelEntry(**{**entry, "meta": meta}).cover_seed == 0, hostile
    assert ModelEntry(**{**entry, "meta": {**entry["meta"], "training": "not a dict"}}).cover_seed == 0


def test_the_thumbnail_starts_at_the_cover_seed_and_wraps_past_the_last_seed(tmp_path: Path):
    source = make_random_model(tmp_path / "model.safetensors", seed=3)
    bundle = load_checkpoint(with_cover_seed(source, tmp_path / "picked.safetensors", SEED_LIMIT))
    write_thumbnail(bundle, tmp_path / "thumbnail.png")
    with Image.open(tmp_path / "thumbnail.png") as thumb:
        sheet = np.asarray(thumb.convert("RGB")).astype(int)
    tiles = [sheet[:32, :32], sheet[:32, 32:], sheet[32:, :32], sheet[32:, 32:]]
    G = bundle.G_ema
    z = torch.cat([z_from_seed(seed, G.z_dim) for seed in (SEED_LIMIT, 0, 1, 2)])
    with torch.inference_mode():
        expected = to_uint8(G.render(z, "z")).astype(int)
    for tile, image in zip(tiles, expected, strict=True):
        assert np.abs(tile - image).max() <= 1
