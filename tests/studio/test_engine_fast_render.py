"""Sessions render through the fast display path: the eager network's pixels, a clean fallback when it fails,
previews sized by their measured time, and stale renders stopped in front of the frame that replaces them."""

# Fixtures imported from engine_support reappear as test parameters.
# ruff: noqa: F811

import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from models import fast_synthesis
from studio.engine import session as session_module
from studio.engine.imaging import to_uint8
from studio.engine.renderer import Renderer, RenderResult
from studio.engine.selftest import make_random_model
from studio.engine.session import Session
from studio.engine.state import Edit, RenderState
from tests.studio.engine_support import model_file  # noqa: F401


def eager_pixels(session: Session, state: RenderState) -> np.ndarray:
    """What the reference network renders for `state`, in fp32."""
    with torch.inference_mode():
        ws = session._compose(state)
        generator = torch.Generator().manual_seed(state.noise_seed)
        image = session.G.synthesis(ws, noise_mode=state.noise_mode, noise_scale=state.noise_strength,
                                    generator=generator)
    return to_uint8(image)[0]


def test_fp32_sessions_render_the_eager_pixels_and_bf16_stays_close(model_file: Path, tmp_path: Path):
    fp32 = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)
    bf16 = Session(model_file, device="cpu", precision="bf16", data_dir=tmp_path)
    assert fp32._fast is not None and bf16._fast is not None
    for state in (
        RenderState(model_id="", seed=3, psi=0.7),
        RenderState(model_id="", seed=4, noise_mode="random", noise_seed=9, noise_strength=1.5),
    ):
        reference = eager_pixels(fp32, state)
        assert np.abs(fp32.render(state).astype(int) - reference).max() <= 1
        assert np.abs(bf16.render(state).astype(int) - reference).mean() < 3


def test_a_failing_fast_path_falls_back_to_the_eager_network_with_a_log_line(
    model_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    session = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("could not create a primitive")  # what oneDNN says when a kernel is missing

    monkeypatch.setattr(fast_synthesis.FastSynthesis, "_block", broken)
    state = RenderState(model_id="", seed=2)
    with caplog.at_level(logging.WARNING, logger="studio.engine.session"):
        image = session.render(state)
    assert "fast render path failed" in caplog.text
    assert session._fast is None and np.array_equal(image, eager_pixels(session, state))
    assert session.render(state, preview=True).shape == image.shape  # and it keeps rendering


def test_the_preview_resolution_follows_the_measured_render_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    model = make_random_model(tmp_path / "m256.safetensors", resolution=256, w_dim=16, channel_base=256,
                              channel_max=16)
    session = Session(model, device="cpu", precision="fp32", data_dir=tmp_path)
    assert session.preview_resolution == 64
    monkeypatch.setattr(session_module, "PREVIEW_BUDGET_MS", 1e6)  # everything fits: previews grow to half size
    for seed in range(3):
        session.render(RenderState(model_id="", seed=seed), preview=True)
    assert session.preview_resolution == 128
    monkeypatch.setattr(session_module, "PREVIEW_BUDGET_MS", 1e-3)  # nothing fits: they shrink to 64 px
    for seed in range(3):
        image = session.render(RenderState(model_id="", seed=seed), preview=True)
        assert image.shape == (256, 256, 3)
    assert session.preview_resolution == 64
    # A preview drawn from the prefix cache says nothing about the cost of a whole one: the size stays.
    monkeypatch.setattr(session_module, "PREVIEW_BUDGET_MS", 1e6)
    session.render(RenderState(model_id="", seed=2))
    session.render(RenderState(model_id="", seed=2), preview=True)
    assert session._fast.last_reused_blocks > 0 and session.preview_resolution == 64


@pytest.mark.parametrize(
    "first, second, first_drawn",
    [
        ((1, True), (2, False), False),  # a stale preview does not delay the full render that replaces it
        ((1, False), (2, True), False),  # a full render a drag made stale stops for the drag's preview
        ((1, True), (2, True), True),  # previews of a drag never stop each other: every one that runs shows
        ((1, False), (2, False), True),  # nor do full renders
        ((1, True), (1, False), True),  # a preview of the state the full render will show finishes: it is reused
    ],
)
def test_a_running_render_stops_only_for_a_request_of_the_other_kind(model_file: Path, tmp_path: Path, first,
                                                                     second, first_drawn):
    session = Session(model_file, device="cpu", data_dir=tmp_path)
    renderer = Renderer()
    renderer.set_session(session)
    results: list[RenderResult] = []
    states = {seed: RenderState(model_id="", seed=seed, edits=()) for seed in (1, 2)}
    try:
        with session._lock:  # the first render starts and waits here, so the second request is already pending
            renderer.request(states[first[0]], first[1], results.append)
            deadline = time.monotonic() + 30
            while not renderer._busy and time.monotonic() < deadline:
                time.sleep(0.001)
            renderer.request(states[second[0]], second[1], results.append)
        assert renderer.wait_idle(timeout=60)
    finally:
        renderer.shutdown()
    drawn = [(r.state.seed, r.preview) for r in results]
    assert drawn == ([first, second] if first_drawn else [second])
    assert renderer.renders == len(results) and all(r.error is None for r in results)
    assert np.array_equal(results[-1].image, session.render(states[second[0]], second[1]))


def test_a_direction_on_fine_layers_reuses_the_coarse_blocks(model_file: Path, tmp_path: Path):
    session = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)
    direction = session.directions()[0].id
    base = RenderState(model_id="", seed=5)
    session.render(base)
    edited = base.replace(edits=(Edit(direction, 2.0, (6, 8)),))
    image = session.render(edited)
    assert session._fast.last_reused_blocks == 3  # the 4, 8 and 16 px blocks read only layers 0-5
    assert np.abs(image.astype(int) - eager_pixels(session, edited)).max() <= 1


def test_the_mapping_runs_once_per_seed_and_its_cached_latents_stay_intact(model_file: Path, tmp_path: Path):
    session = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)
    calls = []
    session.G.mapping.register_forward_hook(lambda *args: calls.append(1))
    state = RenderState(model_id="", seed=11)
    first = session.render(state)
    w = session.w_for_seed(11)
    w[:] = 0  # the caller's copy, not the cache
    for psi in (0.9, 0.8):
        session.render(state.replace(psi=psi), preview=True)
    assert len(calls) == 1
    assert np.array_equal(session.render(state), first) and not np.array_equal(session.w_for_seed(11), w)
