"""Shared fixtures of the studio tests: an isolated user data folder and tiny real model files (made by the
engine's `make_random_model`, which the self-test uses too).

Qt runs offscreen; the platform must be chosen before any Qt module creates the application.
"""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from studio.engine.selftest import make_random_model  # noqa: E402


@pytest.fixture
def studio_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """GAN_STUDIO_HOME in a temporary folder: library, settings and caches of one test only."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("GAN_STUDIO_HOME", str(home))
    # The tests drive the tiny model; the shipped one is tested where a test asks for it.
    monkeypatch.setattr("studio.engine.library.bundled_model_path", lambda: None)
    return home


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    """A 32 px random StyleGAN2 (channel_base 512, channel_max 64, z/w 32, 2 mapping layers) in our format."""
    return make_random_model(tmp_path / "tiny.safetensors")


@pytest.fixture(scope="session")
def warm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user data folder holding the tiny model in its library and its directions already computed
    (GANSpace samples 10 000 latents: seconds that every test would otherwise spend again)."""
    from studio.engine.library import ModelLibrary
    from studio.engine.session import Session

    home = tmp_path_factory.mktemp("warm-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GAN_STUDIO_HOME", str(home))
        source = make_random_model(tmp_path_factory.mktemp("source") / "tiny.safetensors")
        entry = ModelLibrary(home / "library").import_model(source)
        Session(entry).directions()
    return home


@pytest.fixture
def library_home(studio_home: Path, warm_home: Path) -> Path:
    """`studio_home` with the tiny model already imported and its directions cached."""
    shutil.copytree(warm_home, studio_home, dirs_exist_ok=True)
    return studio_home


@pytest.fixture
def empty_home(studio_home: Path, warm_home: Path) -> Path:
    """`studio_home` with an empty library, but the tiny model's directions cached for when it is dropped."""
    shutil.copytree(warm_home / "directions", studio_home / "directions")
    return studio_home


@pytest.fixture
def make_window(qtbot):
    """Opens main windows on the current GAN_STUDIO_HOME; closes and deletes them after the test (closed
    windows left alive would be restyled by every later theme change)."""
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    from studio.ui.main_window import MainWindow

    windows = []

    def make() -> MainWindow:
        window = MainWindow()
        window.show()
        window.open_initial_model()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
        window.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def window(qtbot, library_home: Path, make_window):
    """A main window showing the tiny model's first full render."""
    from tests.studio.ui_support import settle

    window = make_window()
    settle(qtbot, window)
    return window


@pytest.fixture(scope="module")
def event_loop_cycled(qapp) -> None:
    """One short `exec()` before a module that waits for worker results. After an earlier test ran
    `app.exec()` with a window shown (test_ui_export's run_app test), Qt's `processEvents` stops delivering
    events posted from other threads until the loop runs again, so worker results never land."""
    from PySide6.QtCore import QTimer

    QTimer.singleShot(10, qapp.quit)
    qapp.exec()


@pytest.fixture
def one_thread_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training subprocess inherits this: two processes on two cores must not oversubscribe them."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
