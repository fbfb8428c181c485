"""Rendering a tiny real checkpoint: latents, edits, truncation, mixing, noise, previews, directions."""

# Fixtures imported from engine_support reappear as test parameters.
# ruff: noqa: F811

from pathlib import Path

import numpy as np
import pytest

from models import directions as direction_math
from models.checkpoints import CheckpointError
from studio.engine.mixing import layer_presets, mixing_grid
from studio.engine.selftest import make_random_model
from studio.engine.session import Session
from studio.engine.state import Edit, MixSource, RenderState
from tests.studio.engine_support import model_file  # noqa: F401


@pytest.fixture(scope="module")
def session(model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Session:
    return Session(model_file, device="cpu", data_dir=tmp_path_factory.mktemp("data"))


def state(session: Session, **kw) -> RenderState:
    return RenderState(model_id=session.model_id, **kw)


def differs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_session_describes_its_model(session: Session, model_file: Path):
    assert session.resolution == 32 and session.num_ws == 8 and session.w_dim == 32
    assert session.meta.resolution == 32 and len(session.model_hash) == 64
    assert session.model_id == session.model_hash[:16] == session.entry.id
    assert session.preview_resolution == 32  # models below 64 px preview at full size


def test_forced_precision_is_used_and_bf16_stays_close_to_fp32(model_file: Path, tmp_path: Path):
    fp32 = Session(model_file, device="cpu", precision="fp32", data_dir=tmp_path)
    bf16 = Session(model_file, device="cpu", precision="bf16", data_dir=tmp_path)
    assert (fp32.device_label, bf16.device_label) == ("CPU · fp32", "CPU · bf16")
    s = RenderState(model_id="", seed=3)
    exact, rounded = fp32.render(s), bf16.render(s)
    assert 0 < differs(exact, rounded) < 2  # bf16 really ran, within a level or two of fp32


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_auto_precision_follows_the_cpu(model_file: Path, tmp_path: Path, monkeypatch, fast_bf16: bool):
    monkeypatch.setattr("models.device.cpu_has_fast_bf16", lambda: fast_bf16)
    session = Session(model_file, device="cpu", data_dir=tmp_path)
    assert session.device_label == ("CPU · bf16" if fast_bf16 else "CPU · fp32")


def test_render_is_deterministic_and_seeds_differ(session: Session):
    a = session.render(state(session, seed=1))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8 and a.flags.c_contiguous
    assert np.array_equal(a, session.render(state(session, seed=1)))
    assert differs(a, session.render(state(session, seed=2))) > 1


def test_w_overrides_the_seed(session: Session):
    w = session.w_for_seed(5)
    assert w.shape == (32,) and w.dtype == np.float32
    via_w = session.render(state(session, seed=0, w=tuple(w.tolist())))
    assert np.array_equal(via_w, session.render(state(session, seed=5)))
    ws = session.ws_for_state(state(session, seed=5))
    assert np.array_equal(session.render(state(session, w=tuple(ws.reshape(-1).tolist()))), via_w)
    with pytest.raises(ValueError, match="does not fit this model"):
        session.render(state(session, w=(0.0,) * 7))


def test_truncation_psi_zero_gives_one_image_for_every_seed(session: Session):
    images = [session.render(state(session, seed=s, psi=0.0)) for s in (0, 1, 99)]
    assert all(np.array_equal(images[0], im) for im in images[1:])
    assert differs(session.render(state(session, seed=1, psi=0.5)), images[0]) > 0
    # a cutoff truncates only the first layers, so seeds differ again
    cut = [session.render(state(session, seed=s, psi=0.0, cutoff=2)) for s in (0, 1)]
    assert differs(*cut) > 0


def test_edits_move_pixels_and_amount_zero_is_identity(session: Session):
    base = state(session, seed=3)
    direction = session.directions()[0]
    zero = base.replace(edits=(Edit(direction.id, 0.0, (0, session.num_ws)),))
    assert np.array_equal(session.render(zero), session.render(base))
    moved = base.replace(edits=(Edit(direction.id, 3.0, (0, session.num_ws)),))
    assert differs(session.render(moved), session.render(base)) > 1
    ws, ws_moved = session.ws_for_state(base), session.ws_for_state(moved)
    assert np.allclose(ws_moved - ws, 3.0 * direction.vector, atol=1e-5)
    fine_only = base.replace(edits=(Edit(direction.id, 3.0, (6, 8)),))
    delta = session.ws_for_state(fine_only) - ws
    assert np.all(delta[:6] == 0) and np.allclose(delta[6:], 3.0 * direction.vector, atol=1e-5)
    with pytest.raises(KeyError, match="does not exist"):
        session.render(base.replace(edits=(Edit("nope", 1.0, (0, 8)),)))


def test_edits_apply_after_truncation(session: Session):
    direction = session.directions()[0]
    edited = [
        session.ws_for_state(state(session, seed=s, psi=0.0, edits=(Edit(direction.id, 2.0, (0, 8)),)))
        for s in (0, 1)
    ]
    assert np.allclose(edited[0], edited[1])
    assert np.allclose(edited[0][0] - session.G.mapping.w_avg.numpy(), 2.0 * direction.vector, atol=1e-5)


def test_mixing_every_layer_from_b_renders_b(session: Session):
    b = state(session, seed=11, psi=0.7)
    all_from_b = state(session, seed=4, psi=0.7, mix=(MixSource(seed=11, layers=tuple(range(8))),))
    assert np.array_equal(session.render(all_from_b), session.render(b))
    w_b = tuple(session.w_for_seed(11).tolist())
    via_w = state(session, seed=4, psi=0.7, mix=(MixSource(w=w_b, layers=tuple(range(8))),))
    assert np.array_equal(session.render(via_w), session.render(b))
    fine = state(session, seed=4, psi=0.7, mix=(MixSource(seed=11, layers=(6, 7)),))
    ws, ws_a = session.ws_for_state(fine), session.ws_for_state(state(session, seed=4, psi=0.7))
    assert np.array_equal(ws[:6], ws_a[:6]) and np.array_equal(ws[6:], session.ws_for_state(b)[6:])
    with pytest.raises(ValueError, match="outside this model"):
        session.render(state(session, mix=(MixSource(seed=1, layers=(8,)),)))


def test_mixing_grid_layout(session: Session):
    rows = [state(session, seed=s) for s in (1, 2)]
    cols = [state(session, seed=s) for s in (3, 4, 5)]
    sheet = mixing_grid(session, rows, cols, range(session.num_ws))
    assert sheet.shape == (3 * 32, 4 * 32, 3)
    assert np.all(sheet[:32, :32] == 255)  # the blank corner
    assert np.array_equal(sheet[:32, 32:64], session.render(cols[0]))
    assert np.array_equal(sheet[32:64, :32], session.render(rows[0]))
    assert np.array_equal(sheet[64:96, 96:128], session.render(cols[2]))  # every layer from column 3
    coarse = mixing_grid(session, rows[:1], cols[:1], range(*layer_presets(session.num_ws)["coarse"]))
    assert differs(coarse[32:, 32:], session.render(cols[0])) > 0


def test_noise_modes_strength_and_seed(session: Session):
    s = state(session, seed=2)
    const, none = session.render(s), session.render(s.replace(noise_mode="none"))
    assert differs(const, none) > 0
    assert np.array_equal(session.render(s.replace(noise_strength=0.0)), none)
    random_a = session.render(s.replace(noise_mode="random", noise_seed=1))
    assert np.array_equal(random_a, session.render(s.replace(noise_mode="random", noise_seed=1)))
    assert differs(random_a, session.render(s.replace(noise_mode="random", noise_seed=2))) > 0
    assert differs(const, session.render(s.replace(noise_strength=2.0))) > 0


def test_preview_is_full_size_and_close(tmp_path: Path):
    model = make_random_model(tmp_path / "m128.safetensors", resolution=128, w_dim=16)
    session = Session(model, device="cpu", data_dir=tmp_path)
    assert session.preview_resolution == 64
    s = RenderState(model_id="", seed=1)
    full, preview = session.render(s), session.render(s, preview=True)
    assert preview.shape == full.shape == (128, 128, 3)
    assert differs(full, preview) > 0


def test_state_for_another_model_is_refused(session: Session):
    with pytest.raises(ValueError, match="is for model"):
        session.render(RenderState(model_id="0123456789abcdef"))
    assert session.render(RenderState(model_id="")).shape == (32, 32, 3)


def test_directions_are_computed_once_and_cached_on_disk(model_file: Path, tmp_path: Path, monkeypatch):
    first = Session(model_file, device="cpu", data_dir=tmp_path).directions()
    methods = [d.method for d in first]
    assert methods.count("ganspace") == 20 and methods.count("sefa") == 20
    assert all(np.isclose(np.linalg.norm(d.vector), 1, atol=1e-5) for d in first)
    assert all(d.default_layers == (0, 8) for d in first)
    assert (tmp_path / "directions").glob("*.npz")

    def fail(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(direction_math, "ganspace", fail)
    monkeypatch.setattr(direction_math, "sefa", fail)
    again = Session(model_file, device="cpu", data_dir=tmp_path).directions()
    assert [d.id for d in again] == [d.id for d in first]
    assert all(np.array_equal(a.vector, b.vector) for a, b in zip(first, again, strict=True))


def test_user_directions_are_saved_per_model(model_file: Path, tmp_path: Path):
    session = Session(model_file, device="cpu", data_dir=tmp_path)
    vector = session.w_for_seed(1) - session.w_for_seed(2)
    saved = session.save_direction("Smile", vector, (0, 4))
    assert saved.method == "user" and saved.default_layers == (0, 4)
    assert np.isclose(saved.strength, np.linalg.norm(vector))
    session.rename_direction("ganspace-0", "Pose")
    session.reorder_directions([saved.id, "sefa-3"])
    # render with a user direction without computing GANSpace/SeFa
    fresh = Session(model_file, device="cpu", data_dir=tmp_path)
    edited = RenderState(model_id="", seed=2, edits=(Edit(saved.id, 1.0, (0, 8)),))
    assert np.allclose(fresh.ws_for_state(edited)[0], fresh.w_for_seed(1), atol=1e-5)
    assert fresh._computed is None
    listed = fresh.directions()
    assert [d.id for d in listed[:2]] == [saved.id, "sefa-3"]
    assert {d.id: d.name for d in listed}["ganspace-0"] == "Pose"
    assert np.array_equal(listed[0].vector, vector)
    fresh.delete_direction(saved.id)
    assert saved.id not in [d.id for d in Session(model_file, device="cpu", data_dir=tmp_path).directions()]
    with pytest.raises(KeyError):
        fresh.delete_direction("ganspace-0")
    with pytest.raises(ValueError, match="32 finite numbers"):
        fresh.save_direction("bad", np.zeros(5), (0, 8))
    with pytest.raises(ValueError, match="layers"):
        fresh.save_direction("bad", vector, (4, 99))


def test_damaged_direction_files_are_recovered(model_file: Path, tmp_path: Path):
    session = Session(model_file, device="cpu", data_dir=tmp_path)
    folder = tmp_path / "directions"
    folder.mkdir()
    (folder / f"{session.model_hash}.npz").write_bytes(b"not an npz")
    (folder / f"{session.model_hash}.user.json").write_text("{broken")
    session = Session(model_file, device="cpu", data_dir=tmp_path)
    assert len(session.directions()) == 40
    assert (folder / f"{session.model_hash}.user.json.damaged").exists()


def test_bad_model_file_is_a_checkpoint_error(tmp_path: Path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        Session(bad, device="cpu", data_dir=tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        Session(tmp_path / "missing.safetensors", device="cpu", data_dir=tmp_path)


def test_a_session_on_the_cpu_keeps_freed_memory_for_the_next_frame(model_file: Path, tmp_path: Path, monkeypatch):
    calls = []
    monkeypatch.setattr("studio.engine.session.keep_freed_memory", lambda: calls.append("armed"))
    Session(model_file, device="cpu", data_dir=tmp_path)
    assert calls == ["armed"]  # the effect itself: tests/models/test_device.py
