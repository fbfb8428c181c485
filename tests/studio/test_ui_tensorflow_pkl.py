"""A TensorFlow StyleGAN2 pickle dropped on the window is imported like any model: it opens in Explore with
the pixels of the networks it was written from, and nothing in it runs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from models.checkpoints import load_checkpoint
from tests.models import pickle_fixtures as fx
from tests.studio.ui_support import WAIT_MS, canvas, drop, engine_render, settle

pytestmark = pytest.mark.usefixtures("event_loop_cycled")  # after test_ui_export's app.exec()

SHOTS = os.environ.get("GAN_STUDIO_SHOTS")  # a folder to keep the screenshot in, when set


def test_tensorflow_pickle_dropped_on_the_window_opens_in_explore(qtbot, empty_home, tmp_path, make_window):
    G, Gs, D = fx.make_generator(seed=2), fx.make_generator(seed=0), fx.make_discriminator()
    marker = tmp_path / "side-effect"
    path = fx.write_pickle(tmp_path / "stylegan2-ffhq-config-f.pkl", fx.tensorflow_pickle(G, D, Gs, marker), 3)
    window = make_window()
    drop(window, path)
    qtbot.waitUntil(lambda: "stylegan2-ffhq-config-f" in window.models_panel.names(), timeout=WAIT_MS)
    settle(qtbot, window)
    entry = window.controller.entry
    assert entry.name == "stylegan2-ffhq-config-f" and entry.meta["source_format"] == "tensorflow-pkl"
    assert "tensorflow-pkl" in window.models_panel.details.text()
    # The library's copy holds the TensorFlow networks' weights, D included (a base for fine-tuning) ...
    stored = load_checkpoint(entry.path)
    assert torch.equal(fx.pixels(stored.G_ema), fx.pixels(Gs)) and torch.equal(fx.scores(stored.D), fx.scores(D))
    # ... and the canvas shows them.
    shown = canvas(window).copy()
    assert np.array_equal(shown, engine_render(window, window.controller.state)) and shown.std() > 0
    qtbot.keyClick(window, Qt.Key.Key_Right)  # the next seed, as an artist steps through them
    settle(qtbot, window)
    assert window.controller.state.seed == 1
    assert not np.array_equal(canvas(window), shown)
    assert np.array_equal(canvas(window), engine_render(window, window.controller.state))
    assert not marker.exists()
    if SHOTS:
        window.grab().save(os.path.join(SHOTS, "tensorflow_pkl_opened.png"))
