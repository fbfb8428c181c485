"""The Timeline panel in the real window, driven with mouse events: a three-keyframe loop exported as a checked
MP4 that reopens when dropped and that the CLI renders the same; dragging, BPM snapping and editing keyframes in
Explore; playback that keeps time by skipping frames; exports that cancel without leaving files."""

from __future__ import annotations

import time

import imageio.v2 as imageio
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from studio.cli import main
from studio.engine.imaging import resize
from studio.engine.timeline import Animator, Timeline
from studio.engine.timeline_export import read_timeline
from studio.ui.main_window import MainWindow
from studio.ui.panels.timeline import TimelinePanel
from tests.studio.ui_support import WAIT_MS, drop, engine_render, settle

pytestmark = pytest.mark.usefixtures("event_loop_cycled")  # after test_ui_export's app.exec()

LEFT = Qt.MouseButton.LeftButton


def luma(image: np.ndarray) -> np.ndarray:
    """H.264 in 4:2:0 keeps luma whole but halves chroma, which the tiny random model's pixel-sized colour noise
    does not survive: video frames are compared by luma."""
    return image.astype(float) @ np.array([0.299, 0.587, 0.114])


def click_strip(qtbot, panel: TimelinePanel, seconds: float) -> None:
    """A click on empty track at `seconds` (below the thumbnails, on the ruler line's level)."""
    strip = panel.strip
    qtbot.mouseClick(strip, LEFT, pos=QPoint(round(strip.x_of(seconds)), strip.height() - 3))


def add_keyframe(qtbot, window: MainWindow, seconds: float, seed: int) -> None:
    panel = window.timeline_panel
    click_strip(qtbot, panel, seconds)
    window.explore_panel.seed.setValue(seed)
    settle(qtbot, window)
    qtbot.mouseClick(panel.add_button, LEFT)


def build_loop(qtbot, window: MainWindow) -> TimelinePanel:
    panel = window.timeline_panel
    window.docks["Timeline"].show()
    panel.duration.setValue(3.0)
    panel.fps.setValue(4)
    assert panel.loop.isChecked()
    for seconds, seed in ((0.0, 1), (1.0, 2), (2.0, 3)):
        add_keyframe(qtbot, window, seconds, seed)
    return panel


def test_three_keyframe_loop_exports_a_checked_mp4_that_reopens_and_renders_the_same_headless(
    qtbot, window, tmp_path
):
    panel = build_loop(qtbot, window)
    timeline = panel.timeline
    assert [(k.time, k.state.seed) for k in timeline.keyframes] == [(0.0, 1), (1.0, 2), (2.0, 3)]

    panel.size.setValue(64)  # twice the model's 32 px: H.264 blurs single pixels less
    panel.export(tmp_path / "loop.mp4")
    qtbot.waitUntil(lambda: not panel.exporting(), timeout=WAIT_MS)
    assert panel.status.text() == f"Saved {tmp_path / 'loop.mp4'}"
    frames = [luma(f) for f in imageio.mimread(tmp_path / "loop.mp4")]
    assert len(frames) == timeline.num_frames == 12

    # Keyframe frames (0, 4 and 8 at 4 fps) are renders of their states: within 3 luma levels of H.264 loss,
    # and nearer to them than to any other frame of the loop.
    renders = [luma(resize(engine_render(window, k.state), (64, 64))) for k in timeline.keyframes]
    for render, index in zip(renders, (0, 4, 8), strict=True):
        errors = [np.abs(frame - render).mean() for frame in frames]
        assert errors[index] < 3 and int(np.argmin(errors)) == index
    # A loop: the frame after the last one is the first (so it is not rendered twice), exactly…
    animator = Animator(window.controller.session, timeline)
    assert np.array_equal(animator.render(timeline.duration), animator.render(0.0))
    # …and the video closes without a jump: last → first is a step like any other.
    steps = [np.abs(b - a).mean() for a, b in zip(frames, frames[1:], strict=False)]
    assert np.abs(frames[0] - frames[-1]).mean() <= max(steps)

    # The MP4 carries the timeline: dropping it on the window reopens it.
    panel.set_timeline(Timeline())
    drop(window, tmp_path / "loop.mp4")
    assert panel.timeline == timeline and len(panel.strip.times) == 3

    # The CLI renders the same timeline from its project file.
    project = panel.save_file(tmp_path / "loop.json")
    assert main(["animate", str(project), "--out", str(tmp_path / "cli.mp4"), "--size", "64"]) == 0
    cli_frames = [luma(f) for f in imageio.mimread(tmp_path / "cli.mp4")]
    assert len(cli_frames) == 12
    assert max(np.abs(a - b).mean() for a, b in zip(frames, cli_frames, strict=True)) < 1
    assert read_timeline(tmp_path / "cli.mp4")[0] == timeline


def test_keyframes_drag_with_bpm_snapping_and_edit_in_explore(qtbot, window):
    panel = window.timeline_panel
    window.docks["Timeline"].show()
    panel.bpm.setValue(120)  # beats every 0.5 s
    add_keyframe(qtbot, window, 0.0, 4)
    add_keyframe(qtbot, window, 1.1, 5)
    assert [k.time for k in panel.timeline.keyframes] == [0.0, 1.0]  # 1.1 s snapped to the beat

    strip = panel.strip
    start = strip.key_rect(1).center().toPoint()
    qtbot.mousePress(strip, LEFT, pos=start)
    for x in range(start.x(), round(strip.x_of(2.3)), 8):
        qtbot.mouseMove(strip, QPoint(x, start.y()))
    qtbot.mouseMove(strip, QPoint(round(strip.x_of(2.3)), start.y()))
    qtbot.mouseRelease(strip, LEFT, pos=QPoint(round(strip.x_of(2.3)), start.y()))
    assert [(k.time, k.state.seed) for k in panel.timeline.keyframes] == [(0.0, 4), (2.5, 5)]

    # A click on a keyframe shows it in Explore, and changes made there update it.
    qtbot.mouseClick(strip, LEFT, pos=strip.key_rect(0).center().toPoint())
    settle(qtbot, window)
    assert window.controller.state == panel.timeline.keyframes[0].state
    assert window.explore_panel.seed.value() == 4 and panel.editing == 0
    window.explore_panel.seed.setValue(9)
    settle(qtbot, window)
    assert panel.timeline.keyframes[0].state.seed == 9 and "Editing keyframe 1" in panel.edit_label.text()
    # Moving the playhead ends the editing: Explore changes no longer touch the keyframe.
    click_strip(qtbot, panel, 1.5)
    window.explore_panel.seed.setValue(11)
    settle(qtbot, window)
    assert [k.state.seed for k in panel.timeline.keyframes] == [9, 5] and panel.editing is None


def test_playback_keeps_time_by_skipping_frames(qtbot, window, monkeypatch):
    panel = build_loop(qtbot, window)
    panel.fps.setValue(24)
    session = window.controller.session
    render_ws = session.render_ws

    def slow(*args, **kwargs):  # a model that takes 150 ms a frame, much longer than 1/24 s
        time.sleep(0.15)
        return render_ws(*args, **kwargs)

    monkeypatch.setattr(session, "render_ws", slow)
    click_strip(qtbot, panel, 0.0)
    qtbot.waitUntil(lambda: not panel.frame_busy(), timeout=WAIT_MS)
    qtbot.mouseClick(panel.play_button, LEFT)
    assert panel.playing() and panel.play_button.text() == "Pause"
    started = time.perf_counter()
    qtbot.wait(1500)
    qtbot.mouseClick(panel.play_button, LEFT)
    elapsed = time.perf_counter() - started
    assert not panel.playing()
    # The playhead followed the clock (1/24 s grid, a tick of slack), though at most 1/0.15 frames a second
    # could be drawn: the frames in between were skipped, not queued.
    assert abs(panel.strip.playhead - elapsed) < 0.3
    assert 2 <= panel.frames_shown <= elapsed / 0.15 + 1
    qtbot.waitUntil(lambda: not panel.frame_busy(), timeout=WAIT_MS)
    assert window.canvas.image().width() == session.resolution


def test_cancelled_export_leaves_no_file(qtbot, window, tmp_path):
    panel = build_loop(qtbot, window)
    panel.fps.setValue(30)
    out = tmp_path / "out"
    out.mkdir()
    task = panel.export(out / "long.mp4")
    task.signals.progress.connect(lambda done, total, message: panel.cancel_export())
    qtbot.waitUntil(lambda: not panel.exporting(), timeout=WAIT_MS)
    assert panel.status.text() == "Cancelled; nothing saved." and list(out.iterdir()) == []
    assert not panel.cancel_button.isVisible()
