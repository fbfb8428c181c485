"""Projection and blending through the real main window: an image dropped on Explore is projected with live
progress (and cancelled, keeping the best), a second library model is blended in with the sliders, exported to
the library, and the exported PNGs restore both from a fresh drop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget

from models.checkpoints import load_checkpoint
from studio.engine.blending import BlendCurve, BlendSession, blend_generators
from studio.engine.library import ModelLibrary
from studio.engine.projection import psnr
from studio.engine.recipe import read_recipe
from studio.engine.selftest import make_random_model
from studio.engine.state import RenderState
from tests.studio.ui_support import WAIT_MS, canvas, drop, engine_render, settle

pytestmark = pytest.mark.usefixtures("event_loop_cycled")

STEPS = 40
PROJECTION_MS = 300_000  # a step takes well under a second, but the test machine may be shared


def drop_on(widget: QWidget, path: Path) -> bool:
    """A file dragged onto `widget` and dropped there; whether the drag was accepted."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    centre = widget.rect().center()
    enter = QDragEnterEvent(centre, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if enter.isAccepted():
        QApplication.sendEvent(widget, QDropEvent(QPointF(centre), Qt.DropAction.CopyAction, mime,
                                                  Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    return enter.isAccepted()


def open_model(qtbot, window, entry) -> None:
    """Show `entry` (the window opens the newest import first)."""
    settle(qtbot, window)
    if window.controller.entry.id != entry.id:
        window.controller.open_model(entry)
        qtbot.waitUntil(lambda: window.controller.entry.id == entry.id, timeout=WAIT_MS)
        settle(qtbot, window)


def exported(qtbot, window, path: Path) -> Path:
    task = window.export_panel.export_current(path)
    qtbot.waitUntil(lambda: task.ended, timeout=WAIT_MS)
    return path


@pytest.fixture
def target_file(window, tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An image the model made (seed 7), saved with white bars above and below as a plain PNG: cropping it
    gives back the model's image exactly, padding it does not."""
    image = engine_render(window, RenderState(model_id=window.controller.entry.id, seed=7))
    framed = np.full((40, 32, 3), 255, np.uint8)
    framed[4:36] = image
    path = tmp_path / "my drawing.png"
    Image.fromarray(framed).save(path)
    return path, image


def test_an_image_dropped_on_explore_is_projected_live_and_the_sliders_then_edit_it(
    qtbot, window, target_file, tmp_path
):
    path, made = target_file
    box = window.explore_panel.project
    start_state = window.controller.state
    start_psnr = psnr(canvas(window), made)
    assert drop_on(window.explore_panel, path)
    assert np.array_equal(box.target, made) and box.start_button.isEnabled()
    box.fit.setCurrentText("pad")  # the preview follows the fit
    assert box.target.shape == (32, 32, 3) and not np.array_equal(box.target, made)
    box.fit.setCurrentText("crop")
    assert np.array_equal(box.target, made)
    assert window.controller.state == start_state  # loading alone changes nothing

    box.steps.setValue(STEPS)
    assert box.starts.value() == 4
    box.starts.setValue(2)
    qtbot.mouseClick(box.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: box.progress.value() >= 1, timeout=PROJECTION_MS)
    assert "steps/s" in box.status.text() and "ETA" in box.status.text()
    assert box.cancel_button.isEnabled() and not box.start_button.isEnabled() and not box.starts.isEnabled()
    assert not box.result_view.pixmap().isNull()  # the reconstruction beside the target
    qtbot.waitUntil(lambda: box.task.ended, timeout=PROJECTION_MS)
    settle(qtbot, window)

    result, state = box.result, window.controller.state
    assert result.steps_done == STEPS and not result.cancelled
    assert state.w is not None and len(state.w) == 8 * 32  # a w+ the sliders work on
    shown = canvas(window)
    assert np.array_equal(shown, engine_render(window, state))
    assert psnr(shown, result.image) > 35  # the projection's own fp32 image; the window may render in bf16
    assert psnr(shown, made) > start_psnr + 3  # much nearer the target than where it started

    recipe = read_recipe(exported(qtbot, window, tmp_path / "projected.png"))
    assert recipe["projection"]["file"] == "my drawing.png" and recipe["projection"]["fit"] == "crop"
    assert recipe["projection"]["starts"] == 2
    assert recipe["state"]["w"] == list(state.w)

    window.explore_panel.psi.set_value(0.5)  # sliders keep working on the projection, as on a seed
    window.explore_panel._edit(psi=0.5)
    settle(qtbot, window)
    assert window.controller.state.w == state.w
    assert not np.array_equal(canvas(window), shown)

    window.explore_panel.random()  # another image; dropping the export restores the projection
    settle(qtbot, window)
    drop(window, tmp_path / "projected.png")
    qtbot.waitUntil(lambda: window.controller.state == state, timeout=WAIT_MS)
    settle(qtbot, window)
    assert np.array_equal(canvas(window), shown)


def test_cancel_stops_the_projection_and_keeps_the_best_so_far(qtbot, window, target_file):
    path, made = target_file
    box = window.explore_panel.project
    assert box.load(path)
    box.steps.setValue(5000)
    qtbot.mouseClick(box.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: box.progress.value() >= 3, timeout=PROJECTION_MS)
    qtbot.mouseClick(box.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: box.task.ended, timeout=WAIT_MS)
    settle(qtbot, window)
    result = box.result
    assert result.cancelled and 3 <= result.steps_done < 5000
    assert window.controller.state.w is not None
    assert np.array_equal(canvas(window), engine_render(window, window.controller.state))
    assert psnr(canvas(window), result.image) > 35 and "Stopped" in box.status.text()


def test_an_unreadable_image_is_refused_with_the_reason(qtbot, window, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    box = window.explore_panel.project
    assert not box.load(broken)
    assert box.target is None and "broken.png cannot be projected" in window.messages.text()


def test_blending_a_second_model_in_explore_exports_and_restores_it(qtbot, library_home, make_window, tmp_path):
    library = ModelLibrary(library_home / "library")
    base = library.entries()[0]
    partner = library.import_model(make_random_model(tmp_path / "fine-tune.safetensors", seed=1))
    window = make_window()
    open_model(qtbot, window, base)
    c, box = window.controller, window.explore_panel.blend
    assert [box.partner.itemText(i) for i in range(box.partner.count())] == ["No blend", "fine-tune"]
    assert not box.at.isEnabled()
    plain = canvas(window)
    state = c.state

    def blend_render(curve: BlendCurve) -> np.ndarray:
        return BlendSession(base, partner, curve).render(c.state)

    box.partner.setFocus()
    qtbot.keyClick(box.partner, Qt.Key.Key_Down)  # the user picks "fine-tune"
    qtbot.waitUntil(lambda: isinstance(c.session, BlendSession), timeout=WAIT_MS)
    settle(qtbot, window)
    assert c.state.seed == state.seed and c.state.model_id == c.session.model_id
    assert box.at_label.text() == "16 px" and box.at.isEnabled()
    assert np.array_equal(canvas(window), blend_render(BlendCurve(16)))
    assert not np.array_equal(canvas(window), plain)

    qtbot.keyClick(box.at, Qt.Key.Key_Left)  # swap at 8 px
    expected = blend_render(BlendCurve(8))
    qtbot.waitUntil(lambda: np.array_equal(canvas(window), expected), timeout=WAIT_MS)
    qtbot.keyClick(box.softness.slider, Qt.Key.Key_PageUp)  # a 0.3 octave ramp
    expected = blend_render(BlendCurve(8, 0.3))
    qtbot.waitUntil(lambda: np.array_equal(canvas(window), expected), timeout=WAIT_MS)
    assert "8 px" in box.status.text()

    recipe = read_recipe(exported(qtbot, window, tmp_path / "blend.png"))
    assert recipe["blend"]["a"]["id"] == base.id and recipe["blend"]["b"]["id"] == partner.id
    assert (recipe["blend"]["at"], recipe["blend"]["width"]) == (8, 0.3)

    qtbot.mouseClick(box.add_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: box.export_task.ended, timeout=WAIT_MS)
    added = [e for e in ModelLibrary(library_home / "library").entries() if e.id not in (base.id, partner.id)]
    assert len(added) == 1 and added[0].name.startswith("tiny × fine-tune")
    assert window.models_panel.list.count() == 3  # the Models panel lists it
    stored = load_checkpoint(added[0].path, "cpu")
    assert stored.meta.training["blend"]["b"]["name"] == "fine-tune"
    A, B = (load_checkpoint(e.path, "cpu").G_ema for e in (base, partner))
    reference = blend_generators(A, B, BlendCurve(8, 0.3)).state_dict()
    assert all(torch.equal(t, reference[k]) for k, t in stored.G_ema.state_dict().items())

    qtbot.keyClick(box.partner, Qt.Key.Key_Up)  # "No blend": the base model alone, same image
    qtbot.waitUntil(lambda: not isinstance(c.session, BlendSession) and c.entry.id == base.id, timeout=WAIT_MS)
    settle(qtbot, window)
    assert np.array_equal(canvas(window), plain)

    drop(window, tmp_path / "blend.png")  # the recipe rebuilds the blend from its parents
    qtbot.waitUntil(lambda: isinstance(c.session, BlendSession), timeout=WAIT_MS)
    settle(qtbot, window)
    assert c.session.curve == BlendCurve(8, 0.3) and box.softness.value() == 0.3
    assert np.array_equal(canvas(window), expected)


def test_an_incompatible_partner_is_refused_with_what_differs(qtbot, library_home, make_window, tmp_path):
    library = ModelLibrary(library_home / "library")
    base = library.entries()[0]
    library.import_model(make_random_model(tmp_path / "small.safetensors", resolution=16))
    window = make_window()
    open_model(qtbot, window, base)
    box = window.explore_panel.blend
    box.partner.setFocus()
    qtbot.keyClick(box.partner, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: "cannot be blended" in window.messages.text(), timeout=WAIT_MS)
    assert "resolution 32 vs 16" in window.messages.text()
    settle(qtbot, window)
    assert not isinstance(window.controller.session, BlendSession)
    assert box.partner.currentIndex() == 0
