"""Render states: validation, JSON round trip, undo/redo history, layer presets."""

import json

import numpy as np
import pytest

from studio.engine.mixing import layer_presets
from studio.engine.state import Edit, History, MixSource, RenderState


def rich_state() -> RenderState:
    return RenderState(
        model_id="abc", seed=42, w=tuple(np.linspace(-1, 1, 8, dtype=np.float32).tolist()),
        edits=(Edit("ganspace-0", 1.5, (0, 4)), Edit("user-1", -0.25, (4, 8))), psi=0.7, cutoff=4,
        noise_mode="random", noise_strength=0.5, noise_seed=9,
        mix=(MixSource(seed=3, layers=(6, 7)), MixSource(w=(0.1, 0.2), layers=(0,))), class_index=2,
    )


def test_json_round_trip_is_exact():
    state = rich_state()
    assert RenderState.from_json(state.to_json()) == state
    assert RenderState.from_json(json.loads(state.to_json())) == state  # a recipe holds the parsed object
    assert hash(state) == hash(RenderState.from_json(state.to_json()))


def test_values_are_normalised():
    state = RenderState(
        model_id="m", seed=np.int64(5), w=np.ones(3, dtype=np.float32), psi=1, edits=[],
        noise_strength=np.float32(0.5),
    )
    assert state.seed == 5 and type(state.seed) is int and type(state.noise_strength) is float
    assert state.w == (1.0, 1.0, 1.0) and state.edits == () and isinstance(state.psi, float)
    assert state.replace(psi=0.5).psi == 0.5 and state.psi == 1.0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"noise_mode": "loud"}, "noise mode"),
        ({"psi": float("nan")}, "psi"),
        ({"seed": 1.5}, "seed"),
        ({"seed": True}, "seed"),
        ({"w": ("a",)}, "latent w"),
        ({"edits": ("x",)}, "Edit"),
    ],
)
def test_bad_values_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        RenderState(model_id="m", **change)


def test_bad_edits_and_sources_are_refused():
    with pytest.raises(ValueError, match="start <= end"):
        Edit("d", 1.0, (5, 2))
    with pytest.raises(ValueError, match="pair"):
        Edit("d", 1.0, (1, 2, 3))
    with pytest.raises(ValueError, match="exactly one"):
        MixSource(seed=1, w=(0.0,), layers=(0,))
    with pytest.raises(ValueError, match="exactly one"):
        MixSource(layers=(0,))


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"seed": 1}', "model_id"),
        ('{"model_id": "m", "version": 99}', "newer"),
        ('{"model_id": "m", "edits": [{"amount": 1}]}', "malformed"),
    ],
)
def test_bad_json_names_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        RenderState.from_json(text)


def test_unknown_fields_from_newer_apps_are_ignored():
    data = rich_state().to_dict() | {"future_field": 1}
    assert RenderState.from_dict(data) == rich_state()


def test_history_undo_redo():
    history = History()
    assert history.current is None and not history.can_undo and not history.can_redo
    assert history.undo() is None and history.redo() is None
    a, b, c, d = (RenderState(model_id="m", seed=s) for s in range(4))
    history.push(a)
    assert history.current == a and not history.can_undo
    history.push(b)
    history.push(b)  # pushing the current state again is not a step
    history.push(c)
    assert history.undo() == b and history.undo() == a and history.undo() is None
    assert history.current == a and history.can_redo
    assert history.redo() == b and history.current == b
    history.push(d)  # a new branch drops the redo steps
    assert not history.can_redo and history.redo() is None
    assert history.undo() == b and history.undo() == a


def test_history_is_bounded():
    history = History(limit=3)
    for seed in range(10):
        history.push(RenderState(model_id="m", seed=seed))
    undone = [history.undo() for _ in range(5)]
    assert [s.seed for s in undone if s is not None] == [8, 7, 6]


def test_layer_presets():
    assert layer_presets(18) == {"coarse": (0, 4), "middle": (4, 8), "fine": (8, 18)}
    assert layer_presets(14) == {"coarse": (0, 4), "middle": (4, 8), "fine": (8, 14)}
    for num_ws in (4, 6, 8):
        presets = layer_presets(num_ws)
        assert presets["coarse"][0] == 0 and presets["fine"][1] == num_ws
        assert presets["coarse"][1] == presets["middle"][0] and presets["middle"][1] == presets["fine"][0]
        assert all(start < end for start, end in presets.values())
