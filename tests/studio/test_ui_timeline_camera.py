"""An artist's camera move on the timeline, in the real window: a StyleGAN3 model dropped on the window, a
keyframe with the camera centred, the Camera box's sliders moved for a second keyframe and then for that keyframe
while it is selected, an exported PNG sequence whose frames pan and turn between the two, and the Export panel's
interpolation video between them bookmarked. A StyleGAN2 model opens a timeline with camera keys without them."""

from __future__ import annotations

import os

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QScrollArea

from studio.engine.recipe import read_recipe
from studio.engine.state import RenderState
from studio.engine.timeline import Keyframe, Timeline
from studio.engine.timeline_export import save_timeline
from tests.studio.ui_support import WAIT_MS, canvas, engine_render, open_stylegan3, settle

pytestmark = pytest.mark.usefixtures("event_loop_cycled")  # after test_ui_export's app.exec()

SHOTS = os.environ.get("GAN_STUDIO_SHOTS")  # a folder to keep the screenshots in, when set
LEFT = Qt.MouseButton.LeftButton


def page_up(qtbot, window, slider) -> None:
    """Page Up on the focused slider: Qt's own key handling moves it by a tenth of its range."""
    slider.setFocus()
    qtbot.keyClick(slider, Qt.Key.Key_PageUp)
    settle(qtbot, window)


def test_camera_keyframes_pan_and_turn_an_exported_sequence(qtbot, empty_home, tmp_path, make_window):
    window = make_window()
    open_stylegan3(qtbot, tmp_path, window)
    controller, camera, panel = window.controller, window.explore_panel.camera, window.timeline_panel
    assert camera.isVisibleTo(window)
    column = camera.parentWidget()
    while not isinstance(column, QScrollArea):  # Explore's column scrolls; the artist scrolls to the Camera box
        column = column.parentWidget()
    column.ensureWidgetVisible(camera)
    if SHOTS:
        qtbot.waitUntil(lambda: not controller.tasks.busy(), timeout=WAIT_MS)  # the seed browser's thumbnails
        window.grab().save(os.path.join(SHOTS, "sg3_explore_camera_box.png"))
    window.docks["Timeline"].show()
    panel.duration.setValue(2.0)
    panel.fps.setValue(4)
    qtbot.mouseClick(panel.loop, LEFT)
    assert not panel.timeline.loop
    strip = panel.strip

    def click_strip(seconds: float) -> None:
        qtbot.mouseClick(strip, LEFT, pos=QPoint(round(strip.x_of(seconds)), strip.height() - 3))

    # Keyframe 1: the picture as it opened, camera centred.
    click_strip(0.0)
    qtbot.mouseClick(panel.add_button, LEFT)
    # Keyframe 2, at the end: moved a fifth of the width to the right.
    click_strip(panel.timeline.duration)
    page_up(qtbot, window, camera.translate_x.slider)
    page_up(qtbot, window, camera.translate_x.slider)
    qtbot.mouseClick(panel.add_button, LEFT)
    assert [(k.time, k.state.camera) for k in panel.timeline.keyframes] == [(0.0, (0, 0, 0)), (2.0, (0.2, 0, 0))]

    # Selected, keyframe 2 follows the Camera box: a turn of 36° added to it.
    qtbot.mouseClick(strip, LEFT, pos=strip.key_rect(1).center().toPoint())
    settle(qtbot, window)
    assert panel.editing == 1 and camera.translate_x.value() == 0.2
    page_up(qtbot, window, camera.rotate.slider)
    assert panel.timeline.keyframes[1].state.camera == (0.2, 0.0, 36.0)
    assert "camera x +0.200 y +0.000 ↻ +36.0°" in panel.edit_label.text()
    assert np.array_equal(canvas(window), engine_render(window, panel.timeline.keyframes[1].state))
    if SHOTS:
        qtbot.waitUntil(lambda: not controller.tasks.busy(), timeout=WAIT_MS)  # the keyframes' thumbnails
        window.grab().save(os.path.join(SHOTS, "sg3_timeline_camera_keys.png"))
    # Keyframe 1 comes back into Explore centred: the Camera box shows each keyframe's own camera.
    qtbot.mouseClick(strip, LEFT, pos=strip.key_rect(0).center().toPoint())
    settle(qtbot, window)
    assert controller.state.camera == (0, 0, 0) and camera.rotate.value() == 0.0

    panel.export(tmp_path / "pan")
    qtbot.waitUntil(lambda: not panel.exporting(), timeout=WAIT_MS)
    files = sorted(panel.last_written.glob("frame_*.png"))
    assert len(files) == 9  # 2 s at 4 fps, and the last keyframe's frame
    frames = [np.asarray(Image.open(f)) for f in files]
    states = [RenderState.from_dict(read_recipe(f)["state"]) for f in files]
    assert [s.camera for s in states[::4]] == [(0, 0, 0), pytest.approx((0.1, 0, 18.0)), (0.2, 0, 36.0)]
    assert np.array_equal(frames[0], engine_render(window, panel.timeline.keyframes[0].state))
    assert np.array_equal(frames[8], engine_render(window, panel.timeline.keyframes[1].state))
    # Every frame moves on from the one before, and is the render of its own recipe.
    assert all(np.abs(b.astype(int) - a).mean() > 1 for a, b in zip(frames, frames[1:], strict=False))
    assert np.array_equal(frames[4], engine_render(window, states[4]))

    # The Export panel's interpolation video between the two keyframes, bookmarked, moves the camera too.
    qtbot.keyClick(window, Qt.Key.Key_F)  # keyframe 1, in Explore
    qtbot.mouseClick(strip, LEFT, pos=strip.key_rect(1).center().toPoint())
    settle(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_F)
    assert [s.camera for s in controller.favourites] == [(0, 0, 0), (0.2, 0, 36.0)]
    export = window.export_panel
    export.keyframes.setCurrentIndex(export.keyframes.findData("favourites"))
    export.seconds.setValue(1.0)
    export.fps.setValue(3)
    export.export_video(tmp_path / "pan.mp4")
    qtbot.waitUntil(lambda: not export.busy(), timeout=WAIT_MS)
    video = [f.astype(float) for f in imageio.mimread(tmp_path / "pan.mp4", format="FFMPEG")]
    assert len(video) == 3  # the two favourites, and halfway between them
    # Each frame is nearest to its own render (the start, the halfway frame of the sequence, the end).
    start, end = controller.favourites
    renders = [engine_render(window, s).astype(float) for s in (start, states[4], end)]
    errors = np.array([[np.abs(frame - render).mean() for render in renders] for frame in video])
    assert list(errors.argmin(axis=1)) == [0, 1, 2], errors


def test_a_stylegan2_model_opens_a_timeline_with_camera_keys_without_them(qtbot, window, tmp_path):
    controller, panel = window.controller, window.timeline_panel
    assert not controller.session.has_camera and not window.explore_panel.camera.isVisibleTo(window)
    state = controller.state
    moving = Timeline((Keyframe(0, state), Keyframe(1, state.replace(seed=3, translate_x=0.2, rotate=30.0))), 2.0)
    project = save_timeline(moving, controller.session, tmp_path / "moving.json")
    messages = []
    controller.message.connect(lambda kind, text: messages.append((kind, text)))

    assert panel.open_file(project)
    assert panel.timeline == moving.without_camera()
    assert ("info", "moving.json moves the camera, which this StyleGAN2 model cannot: ignored.") in messages
    # Its keyframes come back into Explore as this model can show them, and render.
    qtbot.mouseClick(panel.strip, LEFT, pos=panel.strip.key_rect(1).center().toPoint())
    settle(qtbot, window)
    assert controller.state == moving.keyframes[1].state.with_camera((0, 0, 0))
    assert not [m for m in messages if m[0] == "error"]
