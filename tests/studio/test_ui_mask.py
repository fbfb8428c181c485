"""The mask brush in the real window: a stroke painted with the mouse confines a new seed to its region; the
stroke is one undo step; inverting, clearing and a dropped PNG's recipe all come back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from studio.engine.masking import rasterize
from tests.studio.ui_support import WAIT_MS, canvas, drop, engine_render, settle

pytestmark = pytest.mark.usefixtures("event_loop_cycled")  # after test_ui_export's app.exec()

LEFT = Qt.MouseButton.LeftButton


def paint(qtbot, window, start: tuple[float, float], end: tuple[float, float], steps: int = 12) -> None:
    overlay, rect = window.mask_panel.overlay, window.canvas.image_rect()

    def at(fx: float, fy: float) -> QPoint:
        return QPoint(round(rect.x() + fx * rect.width()), round(rect.y() + fy * rect.height()))

    qtbot.mousePress(overlay, LEFT, pos=at(*start))
    for i in range(1, steps + 1):
        qtbot.mouseMove(overlay, at(*(s + (e - s) * i / steps for s, e in zip(start, end, strict=True))))
    qtbot.mouseRelease(overlay, LEFT, pos=at(*end))


def test_a_painted_mask_confines_a_new_seed(qtbot, window, tmp_path):
    c, panel = window.controller, window.mask_panel
    window.docks["Mask"].show()
    window.docks["Mask"].raise_()
    panel.hardness.slider.setValue(100)
    panel.size.slider.setValue(30)
    # From the 16 px block the 32 px model's mask interior is the edit's own; the 8 px default blends more context.
    panel.blend_from.setCurrentIndex(panel.blend_from.findData(16))
    qtbot.mouseClick(panel.paint, LEFT)
    assert panel.paint.isChecked()
    original = c.state

    paint(qtbot, window, (0.3, 0.3), (0.7, 0.6))
    settle(qtbot, window)
    mask = c.state.mask
    assert mask is not None and mask.original == original and len(mask.strokes) == 1 and mask.blend_from == 16
    assert len(mask.strokes[0].points) > 2
    # The mask alone changes nothing: both passes render the same latents. Masked images come from the reference
    # network, plain ones from the display path: in bf16 their roundings differ by a few levels.
    slack = 1 if c.session.dtype is None else 12
    assert np.abs(canvas(window).astype(int) - engine_render(window, original)).max() <= slack

    window.explore_panel.seed.setValue(original.seed + 1)
    settle(qtbot, window)
    coverage = rasterize(c.state.mask, c.session.resolution)
    shown = canvas(window).astype(int)
    before = engine_render(window, original).astype(int)
    plain = engine_render(window, original.replace(seed=original.seed + 1)).astype(int)
    assert np.abs(shown - before)[coverage == 0].max() <= slack  # the engine test's threshold, and the paths' slack
    inside = coverage == 1
    assert np.abs(shown - plain)[inside].mean() < 0.5 * np.abs(shown - before)[inside].mean()
    assert "inside" in panel.status.text()

    # Undo steps back through the seed, then the whole stroke (one step for the drag); redo returns both.
    masked = c.state
    window.undo_action.trigger()
    assert c.state == masked.replace(seed=original.seed)
    window.undo_action.trigger()
    assert c.state == original
    window.redo_action.trigger()
    window.redo_action.trigger()
    assert c.state == masked
    settle(qtbot, window)

    # The recipe of an exported PNG holds the mask: dropping the file restores the exact image.
    window.export_panel.export_current(tmp_path / "masked.png")
    qtbot.waitUntil(lambda: not window.export_panel.busy(), timeout=WAIT_MS)
    qtbot.mouseClick(panel.invert, LEFT, pos=QPoint(8, panel.invert.height() // 2))  # on the box, not past the text
    assert c.state.mask.invert
    qtbot.mouseClick(panel.clear, LEFT)
    assert c.state.mask is None
    settle(qtbot, window)
    drop(window, tmp_path / "masked.png")
    settle(qtbot, window)
    assert c.state == masked and np.array_equal(canvas(window), shown)
