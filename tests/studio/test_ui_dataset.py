"""The Dataset panel: drops routed from the window, the scan report (counts, reasons, duplicates), the lazy
thumbnail grid, the crop preview, and saved datasets (prepare, reopen, rename, delete)."""

from __future__ import annotations

import os
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog

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


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_pipes_and_sockets_in_a_dropped_folder_are_listed_with_their_reason(qtbot, window, tmp_path):
    folder = make_folder(tmp_path)
    os.mkfifo(folder / "pipe.png")  # no writer: reading it would block the scan for ever
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock.jpg"))
    try:
        panel = scanned(qtbot, window, folder)
    finally:
        server.close()
    rejected = {panel.rejected.item(i).text() for i in range(panel.rejected.count())}
    assert {"pipe.png — not a regular file (a named pipe)", "sock.jpg — not a regular file (a socket)"} <= rejected
    assert panel.report["counts"]["usable"] == 6 and panel.report["counts"]["rejected"] == 4
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


def file_action(window, text: str):
    (file_menu,) = [a.menu() for a in window.menuBar().actions() if a.text() == "&File"]
    return next(a for a in file_menu.actions() if a.text() == text)


def test_add_buttons_and_file_menu_scan_like_a_drop(qtbot, window, tmp_path, monkeypatch):
    folder = make_folder(tmp_path)
    panel = scanned(qtbot, window, folder)
    dropped = panel.report
    asked: list[tuple] = []  # (title, start folder[, filter]) of each dialog; what it answers comes next
    answers: list = []

    def fake_dialog(_parent, *args):
        asked.append(args)
        return answers.pop(0)

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", fake_dialog)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", fake_dialog)

    # The panel's button scans the chosen folder exactly as the drop did.
    panel.report = None
    answers.append(str(folder))
    qtbot.mouseClick(panel.add_folder_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.report is not None and not panel.busy(), timeout=WAIT_MS)
    assert panel.report == dropped and panel.sources == [folder]
    assert asked[-1] == ("Add a folder of images", str(tmp_path))  # starts where the last import came from
    assert [panel.rejected.item(i).text().split(" — ")[0] for i in range(2)] == ["empty.png", "notes.jpg"]

    # Several images and a zip; a cancelled dialog changes nothing.
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / "tall.jpg", "inside/tall.jpg")
        zf.write(folder / "notes.jpg", "inside/notes.jpg")
    answers.append(([], ""))
    qtbot.mouseClick(panel.add_images_button, Qt.MouseButton.LeftButton)
    assert panel.report == dropped and not panel.busy()
    chosen = [str(folder / "noise1.png"), str(folder / "wide.png"), str(archive)]
    answers.append((chosen, "Images and zips"))
    panel.report = None
    qtbot.mouseClick(panel.add_images_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.report is not None and not panel.busy(), timeout=WAIT_MS)
    title, start, filters = asked[-1]
    assert title == "Add images or zips" and start == str(tmp_path)
    assert filters.startswith("Images and zips (") and "*.png" in filters and "*.zip" in filters
    counts = panel.report["counts"]
    assert (counts["usable"], counts["rejected"]) == (3, 1) and panel.grid.model().rowCount() == 3
    assert panel.rejected.item(0).text().startswith("notes.jpg — ")

    # The File menu entries bring a closed Dataset panel back, then ask the same dialogs.
    menu_texts = [a.text() for a in file_action(window, "&Open/Import model…").parent().actions() if a.text()]
    mnemonics = [QKeySequence.mnemonic(text).toString() for text in menu_texts]
    assert all(mnemonics) and len(set(mnemonics)) == len(mnemonics)  # every entry has a key of its own
    for text, answer, usable in (("Add dataset &folder…", str(folder), 6),
                                 ("Add dataset &images…", ([str(folder / "wide.png")], ""), 1)):
        window.docks["Dataset"].close()
        window.docks["Explore"].raise_()
        panel.report = None
        answers.append(answer)
        file_action(window, text).trigger()
        assert window.docks["Dataset"].isVisible() and not window.docks["Dataset"].visibleRegion().isEmpty()
        qtbot.waitUntil(lambda: panel.report is not None and not panel.busy(), timeout=WAIT_MS)
        assert panel.report["counts"]["usable"] == usable
    assert panel.report["images"][0]["name"].endswith("wide.png") and not answers

    # Keyboard only: Tab walks from the saved datasets to both buttons, and Space presses one.
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=WAIT_MS)
    panel.saved.setFocus(Qt.FocusReason.TabFocusReason)
    reached = []
    for _ in range(6):
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
        reached.append(QApplication.focusWidget())
    assert panel.add_folder_button in reached
    assert reached[reached.index(panel.add_folder_button) + 1] is panel.add_images_button
    panel.add_images_button.setFocus(Qt.FocusReason.TabFocusReason)
    answers.append(([str(folder / "tall.jpg")], ""))
    qtbot.keyClick(panel.add_images_button, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: not answers and not panel.busy(), timeout=WAIT_MS)
    assert panel.report["counts"]["usable"] == 1 and panel.report["images"][0]["name"].endswith("tall.jpg")


def test_scans_without_usable_images_cannot_be_saved(qtbot, window, tmp_path):
    panel = window.dataset_panel
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "empty.png").write_bytes(b"")
    (broken / "notes.jpg").write_text("these are my notes, not a picture\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, why in ((broken, "The Rejected tab says why."), (empty, "No files were found.")):
        scanned(qtbot, window, folder)
        assert not panel.save_button.isEnabled() and "no usable images" in panel.save_button.toolTip()
        assert f"No usable images: there is nothing to save.</b> {why}" in panel.counts_text()
        assert "Only 0" not in panel.counts_text()
        qtbot.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not panel.busy(), timeout=WAIT_MS)
        assert DatasetStore().datasets() == [] and panel.saved.count() == 0
    assert panel.tabs.currentWidget() is panel.grid  # the empty folder has no reasons to show
    scanned(qtbot, window, broken)
    assert panel.tabs.currentWidget() is panel.rejected

    # One good image can be saved, with a warning; if it is gone by Save, the engine refuses and says so.
    single = tmp_path / "single"
    single.mkdir()
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(single / "one.png")
    scanned(qtbot, window, single)
    assert panel.save_button.isEnabled() and "Only 1 image(s): training will mostly learn" in panel.counts_text()
    (single / "one.png").unlink()
    qtbot.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.busy() and window.messages.text() != "", timeout=WAIT_MS)
    assert "“single” has no usable images, so it was not saved" in window.messages.text()
    assert DatasetStore().datasets() == [] and not (DatasetStore().root / "single").exists()


def test_saved_datasets_stay_listed_after_a_new_scan(qtbot, window, tmp_path, make_window):
    panel = scanned(qtbot, window, make_folder(tmp_path))
    panel.prepare("cats")
    qtbot.waitUntil(lambda: panel.dataset == "cats" and not panel.busy(), timeout=WAIT_MS)
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(other / "grey.png")

    def shown(combo) -> str:  # what the closed combo box reads: its item, or its placeholder without one
        return combo.currentText() or combo.placeholderText()

    for current in (window, make_window()):  # the same window, and the app opened again
        current.dataset_panel.report = None
        scanned(qtbot, current, other)
        saved = current.dataset_panel.saved
        assert [saved.itemText(i) for i in range(saved.count())] == ["cats"]
        assert shown(saved) == "Open a saved dataset (1)"
        assert current.dataset_panel.dataset is None and not current.dataset_panel.rename_button.isEnabled()
    saved.setCurrentIndex(0)
    saved.activated.emit(0)  # choosing it opens it again
    assert current.dataset_panel.dataset == "cats" and shown(saved) == "cats"
    panel.delete("cats")
    assert shown(panel.saved) == "No saved datasets"


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
