"""The Dataset panel: drops routed from the window, the scan report (counts, reasons, duplicates), the lazy
thumbnail grid, the crop preview, and saved datasets (prepare, reopen, rename, delete)."""

from __future__ import annotations

import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from studio.engine.datasets import DatasetStore, PreparedImages
from studio.ui.images import to_array
from tests.studio.ui_support import WAIT_MS, drop, settle


def make_folder(root: Path) -> Path:
    """Six good procedural images (one wide, one tall), one exact copy, and two broken files."""
    folder = root / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"noise{i}.png")
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, :40] = (255, 0, 0)
    wide[:, 40:] = (0, 0, 255)
    Image.fromarray(wide).save(folder / "wide.png")
    Image.fromarray(rng.integers(0, 255, (90, 30, 3), dtype=np.uint8)).save(folder / "tall.jpg")
    (folder / "copy.png").write_bytes((folder / "noise0.png").read_bytes())
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_text("these are my notes, not a picture\n" * 4)
    return folder


def scanned(qtbot, window, *paths: Path):
    panel = window.dataset_panel
    drop(window, *paths)
    qtbot.waitUntil(lambda: panel.report is not None and not panel.busy(), timeout=WAIT_MS)
    return panel


def test_dropped_folder_is_scanned_with_counts_reasons_and_thumbnails(qtbot, window, tmp_path):
    panel = scanned(qtbot, window, make_folder(tmp_path))
    counts = panel.report["counts"]
    assert counts["usable"] == 6 and counts["rejected"] == 2 and counts["duplicates"] == 1
    assert panel.grid.model().rowCount() == 6
    rejected = [panel.rejected.item(i).text() for i in range(panel.rejected.count())]
    assert any(text.startswith("empty.png — ") and "0 bytes" in text for text in rejected)
    assert any(text.startswith("notes.jpg — ") and "text" in text.lower() for text in rejected)
    assert [panel.duplicates.item(i).text() for i in range(panel.duplicates.count())] == [
        "noise0.png = copy.png (dropped)"
    ]
    assert panel.tabs.tabText(0) == "Images (6)" and panel.tabs.tabText(1) == "Rejected (2)"
    assert "6 usable" in panel.counts_text() and "2 rejected" in panel.counts_text()
    assert sum(n for _, n in panel.histogram.bins) == 6
    assert not window.messages.text()  # a dataset drop is not an error
    # The visible thumbnails were decoded off the GUI thread and are the real pixels.
    window.docks["Dataset"].raise_()
    panel.tabs.setCurrentIndex(0)
    qtbot.waitUntil(lambda: panel.grid.thumbnails.loaded() == 6, timeout=WAIT_MS)
    model = panel.grid.thumbnails
    wide_row = next(r for r in range(6) if model.images().name(r).endswith("wide.png"))
    wide = to_array(model.data(model.index(wide_row), 1))  # DecorationRole
    assert wide.shape[1] == 2 * wide.shape[0] and tuple(wide[wide.shape[0] // 2, 2]) == (255, 0, 0)
    # The preview shows the wide image cropped to its centre at the model's resolution (32 px).
    assert panel.chosen_resolution() == 32
    qtbot.waitUntil(lambda: panel.preview_shown() == 4, timeout=WAIT_MS)


def test_prepare_reopen_rename_delete(qtbot, window, tmp_path, make_window):
    folder = make_folder(tmp_path)
    panel = scanned(qtbot, window, folder)
    panel.mode.setCurrentIndex(panel.mode.findData("pad"))
    panel.xflip.setChecked(True)
    panel.prepare("cats")
    qtbot.waitUntil(lambda: panel.dataset == "cats" and not panel.busy(), timeout=WAIT_MS)
    info = DatasetStore().get("cats")
    assert (info.count, info.resolution, info.mode, info.xflip) == (6, 32, "pad", True)
    assert panel.saved.currentText() == "cats" and panel.grid.model().rowCount() == 6
    assert sorted(p.name for p in folder.iterdir())[0] == "copy.png"  # the originals were not touched
    # Padded wide image: red left, blue right, and the padding repeats the edge rows.
    stored = PreparedImages(info.path)
    wide = stored.pixels(next(i for i in range(6) if stored.name(i).endswith("wide.png")))
    assert tuple(wide[0, 2]) == (255, 0, 0) and tuple(wide[-1, -3]) == (0, 0, 255)

    # A new window (the app reopened) lists the dataset, for training too, and shows its report again.
    reopened = make_window()
    assert reopened.dataset_panel.saved.itemText(0) == "cats"
    assert reopened.train_panel.dataset.currentText() == "cats"
    reopened.dataset_panel.open_dataset("cats")
    assert reopened.dataset_panel.report["counts"]["rejected"] == 2
    assert reopened.dataset_panel.grid.model().rowCount() == 6
    reopened.close()

    panel.rename("cats", "my cats")
    assert panel.saved.currentText() == "my cats"
    assert [d.name for d in DatasetStore().datasets()] == ["my cats"]
    panel.open_dataset("my cats")
    assert panel.report["counts"]["rejected"] == 2 and panel.rejected.count() == 2
    panel.delete("my cats")
    assert DatasetStore().datasets() == [] and panel.grid.model().rowCount() == 0
    assert folder.is_dir() and len(list(folder.iterdir())) == 9


def test_recipe_png_still_restores_then_zip_then_cancel(qtbot, window, tmp_path):
    c = window.controller
    window.explore_panel.seed.setValue(5)
    settle(qtbot, window)
    state = c.state
    window.export_panel.export_current(tmp_path / "keeper.png")
    qtbot.waitUntil(lambda: not window.export_panel.busy(), timeout=WAIT_MS)
    window.explore_panel.seed.setValue(6)
    settle(qtbot, window)
    drop(window, tmp_path / "keeper.png")  # an exported image restores its state; it is not a dataset
    settle(qtbot, window)
    assert c.state == state and window.dataset_panel.report is None

    folder = make_folder(tmp_path)
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"inside/{path.name}")
    panel = scanned(qtbot, window, archive)
    assert panel.report["counts"]["usable"] == 6 and panel.report["counts"]["rejected"] == 2
    qtbot.waitUntil(lambda: panel.grid.thumbnails.loaded() == 6, timeout=WAIT_MS)

    # Cancel stops a long scan and leaves the app responsive.
    big = tmp_path / "big"
    big.mkdir()
    image = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for i in range(400):
        image[0, 0, 0] = i % 256
        image[0, 1, 0] = i // 256
        Image.fromarray(image).save(big / f"{i:04d}.png")
    panel.report = None
    drop(window, big)
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=WAIT_MS)
    panel.cancel()
    qtbot.waitUntil(lambda: panel.report is not None, timeout=WAIT_MS)
    assert panel.report["cancelled"] and panel.report["scanned"] < 400
    assert "Cancelled" in panel.counts_text()


def test_ten_thousand_images_scroll_without_decoding_them_all(qtbot, window):
    class Synthetic:
        def __len__(self):
            return 10_000

        def name(self, index):
            return f"{index}.png"

        def thumbnail(self, index, size):
            return np.full((size, size, 3), index % 256, np.uint8)

    panel = window.dataset_panel
    window.docks["Dataset"].raise_()
    panel.grid.thumbnails.set_images(Synthetic())
    qtbot.waitUntil(lambda: panel.grid.thumbnails.loaded() > 0 and not panel.grid.thumbnails.busy(),
                    timeout=WAIT_MS)
    bar = panel.grid.verticalScrollBar()
    started = time.perf_counter()
    for value in np.linspace(0, bar.maximum(), 30):
        bar.setValue(int(value))
        qtbot.wait(5)
    assert time.perf_counter() - started < 3.0
    qtbot.waitUntil(lambda: not panel.grid.thumbnails.busy(), timeout=WAIT_MS)
    model = panel.grid.thumbnails
    assert 0 < model.loaded() < 2000  # only what was on screen was decoded
    last = model.index(9999)
    panel.grid.scrollTo(last)
    qtbot.waitUntil(lambda: to_array(model.data(last, 1))[0, 0, 0] == 9999 % 256, timeout=WAIT_MS)
