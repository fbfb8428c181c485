"""Choosing the training recipe: `recommend_recipe`'s table, `--preset auto` resolved once the run has read its
dataset and recorded for resume, explicit presets as before, and the few-image recipe's frozen mapping network."""

from __future__ import annotations

import json

import pytest
import torch

from models.checkpoints import load_checkpoint
from tests.training.conftest import tiny_config
from training.cli import build_parser, config_from_args
from training.config import (
    AUTO_PRESET,
    DEFAULT_FINETUNE_RECIPE,
    FEW_IMAGES,
    PRESETS,
    ConfigError,
    recommend_recipe,
    resolve_preset,
)
from training.loop import resume_config, train


@pytest.mark.parametrize(
    ("scratch", "images", "preset"),
    [
        (True, 10, "scratch"),
        (True, 50_000, "scratch"),
        (False, 1, "finetune-few"),
        (False, FEW_IMAGES - 1, "finetune-few"),
        (False, FEW_IMAGES, DEFAULT_FINETUNE_RECIPE),
        (False, 3217, DEFAULT_FINETUNE_RECIPE),
    ],
)
def test_recommend_recipe_table(scratch, images, preset):
    recipe = recommend_recipe(scratch, images)
    assert recipe.preset == preset and recipe.preset in PRESETS
    assert recipe.reason and "\n" not in recipe.reason
    if not scratch:
        assert str(images) in recipe.reason


def test_the_default_finetune_recipe_is_one_of_the_two_measured():
    assert DEFAULT_FINETUNE_RECIPE in ("finetune", "finetune-fast")
    assert PRESETS["finetune-few"]["freeze_mapping"] and PRESETS["finetune-few"]["freeze_d"] == 2


def test_resolve_keeps_explicit_values_over_the_chosen_preset(tmp_path):
    config = tiny_config(tmp_path, tmp_path / "run", base="m.pkl", resolution=None, g_lr=0.003,
                         preset=AUTO_PRESET, preset_overrides={"g_lr": 0.003})
    few = resolve_preset(config, 20)
    assert (few.preset, few.g_lr, few.d_lr, few.freeze_d, few.freeze_mapping) == ("finetune-few", 0.003, 0.001, 2, True)
    assert "20 images" in few.preset_reason
    assert resolve_preset(few, 5000) == few  # resolved once: a resumed run keeps it
    many = resolve_preset(config, 5000)
    assert many.preset == DEFAULT_FINETUNE_RECIPE and many.g_lr == 0.003 and not many.freeze_mapping
    clash = tiny_config(tmp_path, tmp_path / "run", base="m.pkl", preset=AUTO_PRESET, freeze_d=1,
                        preset_overrides={"freeze_d": 1, "discriminator": "projected"})
    with pytest.raises(ConfigError, match="--freeze-d"):  # resolved values are checked like given ones
        resolve_preset(clash, 5000)


def parse(tmp_path, *extra: str):
    return config_from_args(build_parser().parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "r"), *extra]))


def test_cli_preset_auto_is_the_default_and_explicit_presets_apply_as_before(tmp_path):
    auto = parse(tmp_path, "--base", "m.pkl", "--g-lr", "0.004", "--set", "ema_kimg=2")
    assert auto.preset == AUTO_PRESET and auto.preset_overrides == {"g_lr": 0.004, "ema_kimg": 2}
    assert auto.g_lr == 0.004 and auto.freeze_d == 0  # the rest waits for the dataset's size
    for name, values in PRESETS.items():
        config = parse(tmp_path, "--base", "m.pkl", "--preset", name, "--d-lr", "0.0001")
        assert config.preset == name and config.preset_overrides == {} and config.d_lr == 0.0001
        assert all(getattr(config, key) == value for key, value in values.items() if key != "d_lr")
    with pytest.raises(ConfigError, match="--preset finetune"):
        parse(tmp_path, "--set", "preset=finetune")


def test_auto_resolves_from_the_prepared_dataset_records_it_and_freezes_the_mapping(tmp_path, discs_folder):
    """48 images: a fine-tune gets the few-image recipe, recorded in config.json for resume; its G's mapping
    network keeps the base's weights (also through path-length regularisation) while synthesis learns. (G_ema's
    mapping follows G's, as every EMA weight does.)"""
    first = train(tiny_config(discs_folder, tmp_path / "base", kimg=0.016))
    base = load_checkpoint(first["checkpoint"])
    config = tiny_config(
        discs_folder, tmp_path / "tuned", base=first["checkpoint"], resolution=None, kimg=0.016, pl_weight=2.0,
        pl_interval=1, preset=AUTO_PRESET,
    )
    events: list[dict] = []
    result = train(config, events.append)
    started = next(e for e in events if e["event"] == "started")
    assert started["preset"] == "finetune-few" and started["preset_reason"].startswith("48 images, fewer than 100")
    recorded = json.loads((tmp_path / "tuned" / "config.json").read_text())
    assert (recorded["preset"], recorded["freeze_mapping"], recorded["freeze_d"]) == ("finetune-few", True, 2)
    assert resume_config(tmp_path / "tuned").preset == "finetune-few"
    assert any(e["event"] == "progress" and "pl_length" in e["losses"] for e in events)
    tuned = load_checkpoint(result["checkpoint"])
    for (name, before), after in zip(base.G.mapping.named_parameters(), tuned.G.mapping.parameters(), strict=True):
        assert torch.equal(before, after), f"frozen mapping weight changed: {name}"
    assert not torch.equal(base.G.synthesis.b4.conv1.weight, tuned.G.synthesis.b4.conv1.weight)


def test_a_fresh_d_for_a_generator_only_base_is_not_frozen(tmp_path, discs_folder, tiny_generator_file):
    """The few-image recipe freezes D's first blocks; a base without D gets a fresh one, whose random blocks
    are trained, not kept."""
    config = tiny_config(discs_folder, tmp_path / "run", base=str(tiny_generator_file), resolution=None,
                         kimg=0.008, preset=AUTO_PRESET)
    events: list[dict] = []
    result = train(config, events.append)
    assert resume_config(tmp_path / "run").freeze_d == 2 and result["status"] == "completed"
    assert any("none of its blocks frozen" in e["message"] for e in events if e["event"] == "warning")
