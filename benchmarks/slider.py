"""Latency from a slider change to new pixels on the canvas, in the real window (offscreen).

Run on demand: `python benchmarks/slider.py [--moves 8] [--threads N] [--models default,256,1024]
[--sliders psi,fine] [--paths eager,fast]`.
`default` is the bundled model; `256` and `1024` are random StyleGAN2 generators in the published widths (256²:
channel_base 16384; 1024²: config-f, 32768; channel_max 512, 8 mapping layers, z = w = 512), written to a
temporary folder first. For each, a slider is moved one step at a time, as a hand does, waiting for the canvas
each time: `psi` is the truncation slider (it changes every layer), `fine` the first direction's slider with its
layers set to the fine preset (so the coarse blocks can be reused). `eager` renders with the reference network
as the studio did before the display path, `fast` with `models.fast_synthesis`; the ratio column compares them
in the same run (eager / fast).
- preview: from the slider's new value to the preview frame painted on the canvas;
- full: from the same moment to the full-resolution frame painted, which includes the controller's rest
  delay (`REST_MS`: the full render starts only once the slider has rested), shown separately.
The render thread's own time for each frame is printed beside it, so queueing and painting can be read off as
the difference. Medians over the moves; the first move after opening is a warm-up and is left out.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# No background torch.compile: it would take a core from the renders being timed (`=1` times the compiled path
# once it has taken over, which --moves must then outlast).
os.environ.setdefault("GAN_STUDIO_COMPILE", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from studio.engine.paths import bundled_model_path  # noqa: E402
from studio.engine.selftest import make_random_model  # noqa: E402
from studio.ui.app import create_application  # noqa: E402
from studio.ui.controller import REST_MS  # noqa: E402
from studio.ui.main_window import MainWindow  # noqa: E402


def wait(app: QApplication, condition, timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not finish rendering")
        app.processEvents()
        time.sleep(0.001)


def measure(app: QApplication, model: Path, moves: int, slider_kind: str, fast: bool) -> dict[str, float]:
    window = MainWindow(persist_layout=False)
    window.resize(1400, 900)
    window.show()
    c = window.controller
    c.open_model(window.library.import_model(model))
    # Opening also renders the library thumbnail, the seed browser page and the directions: let them finish,
    # so the slider's renders are timed alone.
    wait(app, lambda: c.session is not None and c.settled() and bool(c.directions))
    wait(app, lambda: not window.busy() and not window.explore_panel.grid_busy() and c.settled())
    if not fast:
        c.session._fast = None  # the eager network, as before the display path
    frames: list[tuple[float, bool, float]] = []  # (time painted, preview, render thread ms)

    def painted(result) -> None:  # connected after the window's own slot, which has set the image
        window.canvas.widget().repaint()
        frames.append((time.perf_counter(), result.preview, result.elapsed_ms))

    c.image_ready.connect(painted)
    if slider_kind == "psi":
        slider = window.explore_panel.psi.slider
    else:
        row = next(iter(window.explore_panel.rows.values()))
        row.layers.setCurrentText("fine")
        slider = row.slider.slider
        slider.setValue(slider.value() + 5 * (moves + 1))  # room to move down; then let it settle
        wait(app, c.settled)
    rows = []
    for move in range(moves + 1):
        frames.clear()
        start = time.perf_counter()
        slider.setValue(slider.value() - 5)  # ψ −0.05 (or 5 direction steps), one notch of a drag
        wait(app, c.settled)
        previews = [f for f in frames if f[1]]
        full = [f for f in frames if not f[1]][-1]
        if move and previews:
            rows.append((previews[0][0] - start, previews[0][2] / 1000, full[0] - start, full[2] / 1000))
    window.close()
    window.deleteLater()
    return {
        "preview_s": statistics.median(r[0] for r in rows),
        "preview_render_s": statistics.median(r[1] for r in rows),
        "full_s": statistics.median(r[2] for r in rows),
        "full_render_s": statistics.median(r[3] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=8)
    parser.add_argument("--models", default="default,1024")
    parser.add_argument("--sliders", default="psi,fine")
    parser.add_argument("--paths", default="eager,fast")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="gan-studio-bench-") as scratch:
        os.environ["GAN_STUDIO_HOME"] = scratch
        models = {}
        for name in args.models.split(","):
            if name == "default":
                models["default (bundled)"] = bundled_model_path()
            elif name == "256":
                models["256² (random)"] = make_random_model(
                    Path(scratch) / "g-256.safetensors",
                    resolution=256, w_dim=512, mapping_layers=8, channel_base=16384, channel_max=512,
                )
            elif name == "1024":
                models["1024² config-f (random)"] = make_random_model(
                    Path(scratch) / "config-f-1024.safetensors",
                    resolution=1024, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512,
                )
        app = create_application([])
        print(f"torch {torch.__version__}, {args.threads} threads; rest delay before the full render {REST_MS} ms")
        print(f"{'model':<26} {'slider':<6} {'path':<6} {'preview':>9} {'(render)':>9} {'full':>9} {'(render)':>9}"
              "   eager/fast: preview, full")
        for label, path in models.items():
            if path is None:
                print(f"{label:<26} not installed")
                continue
            for slider_kind in args.sliders.split(","):
                results = {}
                for kind in args.paths.split(","):
                    r = results[kind] = measure(app, path, args.moves, slider_kind, fast=kind == "fast")
                    line = (f"{label:<26} {slider_kind:<6} {kind:<6} {r['preview_s']:>8.3f}s "
                            f"{r['preview_render_s']:>8.3f}s {r['full_s']:>8.3f}s {r['full_render_s']:>8.3f}s")
                    if kind == "fast" and "eager" in results:
                        e = results["eager"]
                        line += f"   {e['preview_s'] / r['preview_s']:>6.2f}× {e['full_s'] / r['full_s']:>6.2f}×"
                    print(line, flush=True)
        app.quit()


if __name__ == "__main__":
    main()
