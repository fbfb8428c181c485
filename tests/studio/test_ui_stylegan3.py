"""A StyleGAN3 pickle dropped on the window opens in Explore with the camera: the translate and rotate sliders
move the picture, each drag is one undo step, and the recipe records them. StyleGAN2 models hide the camera."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PySide6.QtCore import Qt

from studio.engine.recipe import make_recipe, read_recipe, write_png_with_recipe
from studio.engine.state import RenderState
from tests.studio.ui_support import WAIT_MS, canvas, engine_render, open_stylegan3, settle

pytestmark = pytest.mark.usefixtures("event_loop_cycled")  # after test_ui_export's app.exec()

SHOTS = os.environ.get("GAN_STUDIO_SHOTS")  # a folder to keep the screenshot in, when set


def test_stylegan3_pickle_opens_with_translate_and_rotate_sliders(qtbot, empty_home, tmp_path, make_window):
    window = make_window()
    open_stylegan3(qtbot, tmp_path, window)
    explore, controller = window.explore_panel, window.controller
    assert controller.session.meta.family == "stylegan3"
    assert explore.camera.isVisibleTo(window)
    still = canvas(window).copy()
    assert np.array_equal(still, engine_render(window, controller.state))

    # Page Up on the focused slider: Qt's own key handling moves it by a page (a tenth of its range).
    move = explore.camera.translate_x.slider
    move.setFocus()
    qtbot.keyClick(move, Qt.Key.Key_PageUp)
    settle(qtbot, window)
    moved_state = controller.state
    assert moved_state.translate_x == 0.1 and moved_state.rotate == 0
    moved = canvas(window).copy()
    assert np.array_equal(moved, engine_render(window, moved_state))
    # A tenth of the width to the right: the moved picture's columns are the still one's, 3 px further on
    # (the canvas shows the 32 px image, so compare at the model's resolution).
    small = lambda im: np.asarray(im, dtype=np.float32)[:: im.shape[0] // 32, :: im.shape[1] // 32]  # noqa: E731
    shifted = np.abs(small(moved)[8:24, 11:27] - small(still)[8:24, 8:24]).mean()
    unshifted = np.abs(small(moved)[8:24, 8:24] - small(still)[8:24, 8:24]).mean()
    assert shifted < 0.5 * unshifted, (shifted, unshifted)

    spin = explore.camera.rotate.slider
    spin.setFocus()
    qtbot.keyClick(spin, Qt.Key.Key_PageUp)
    settle(qtbot, window)
    assert controller.state.rotate == 36.0 and controller.state.translate_x == 0.1
    rotated = canvas(window).copy()
    assert not np.array_equal(rotated, moved)
    assert np.array_equal(rotated, engine_render(window, controller.state))
    if SHOTS:
        window.grab().save(os.path.join(SHOTS, "sg3_explore_camera.png"))

    # The recipe of an export carries the camera, and restores it.
    png = write_png_with_recipe(tmp_path / "out.png", rotated, controller.state, controller.entry)
    recipe = read_recipe(png)
    assert (recipe["state"]["translate_x"], recipe["state"]["rotate"]) == (0.1, 36.0)
    assert RenderState.from_json(json.dumps(recipe["state"])) == controller.state
    assert make_recipe(controller.state, controller.entry)["model_hash"] == controller.session.model_hash

    controller.undo()
    settle(qtbot, window)
    assert controller.state == moved_state and explore.camera.rotate.value() == 0.0
    assert np.array_equal(canvas(window), moved)


def test_stylegan2_models_hide_the_camera(qtbot, window):
    assert window.controller.session.meta.family == "stylegan2"
    assert not window.explore_panel.camera.isVisibleTo(window)


def test_stylegan3_drag_shows_previews_of_a_lower_layer_then_the_full_image(qtbot, empty_home, tmp_path, make_window):
    window = make_window()
    open_stylegan3(qtbot, tmp_path, window, name="alias-free-128", resolution=128)
    controller = window.controller
    assert controller.session.preview_resolution == 64
    shown = []
    controller.image_ready.connect(shown.append)

    slider = window.explore_panel.camera.translate_x.slider
    slider.setSliderDown(True)  # held by the mouse: every move previews
    slider.setValue(slider.value() + slider.pageStep())
    qtbot.waitUntil(lambda: any(result.preview for result in shown), timeout=WAIT_MS)
    preview = next(result for result in shown if result.preview)
    assert preview.image.shape == (128, 128, 3) and preview.state == controller.state
    if SHOTS:
        window.grab().save(os.path.join(SHOTS, "sg3_drag_preview.png"))
    slider.setSliderDown(False)
    settle(qtbot, window)
    full = canvas(window)
    assert not shown[-1].preview and "(preview)" not in window._render_label.text()
    assert np.array_equal(full, engine_render(window, controller.state))
