"""The from-scratch network width: chosen from resolution, dataset size and device, recorded for resume."""

from __future__ import annotations

import dataclasses
import json

from models.checkpoints import load_checkpoint
from tests.training.conftest import tiny_config
from training.config import NetworkWidth, auto_width, estimate_images_per_s, full_width, training_macs
from training.loop import resume_config, train
from training.run_dir import RunDir


def test_auto_width_follows_device_resolution_and_dataset_size():
    assert auto_width(64, 5000, "cpu") == NetworkWidth(2048, 128, 128, 128)  # the bundled model's width
    assert auto_width(128, 5000, "cpu").channels(128) == 32  # 32 channels at the output on a CPU
    assert auto_width(256, 5000, "cuda") == full_width(256) == NetworkWidth(16384, 512, 512, 512)
    assert full_width(1024).channel_base == 32768  # StyleGAN2-ADA's auto config from 512 px up
    assert auto_width(256, 500, "cuda").channel_max == 256  # a small dataset: half the widest layer
    assert auto_width(256, 5000, "mps") == NetworkWidth(8192, 256, 256, 256)
    assert auto_width(64, 500, "cpu") == auto_width(64, 5000, "cpu")  # the CPU width is already the small one


def test_the_full_width_is_dozens_of_times_the_work_on_a_cpu():
    small, full = auto_width(64, 5000, "cpu"), full_width(64)
    assert 30 < training_macs(full, 64) / training_macs(small, 64) < 60
    assert estimate_images_per_s(small, 64, "bf16") == 16.0  # the measured reference itself
    assert 0.1 < estimate_images_per_s(full, 64, "fp32") < estimate_images_per_s(full, 64, "bf16") < 1


def test_a_scratch_run_records_the_width_it_chose_and_resumes_with_it(tmp_path, discs_folder):
    unset = dict(channel_base=None, channel_max=None, z_dim=None, w_dim=None)
    config = tiny_config(discs_folder, tmp_path / "run", kimg=0.008, snap_kimg=0.008, device="cpu", **unset)
    train(config)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {k: recorded[k] for k in unset} == dataclasses.asdict(auto_width(16, 48, "cpu"))
    assert auto_width(16, 48, "cpu") == NetworkWidth(512, 128, 128, 128)
    G = load_checkpoint(RunDir(tmp_path / "run").latest_checkpoint().network).G
    assert G.z_dim == 128 and G.synthesis.b16.conv1.weight.shape[0] == 32  # 512 / 16 channels at 16 px

    # Resumed (on any device), the run builds the recorded width and continues from its checkpoint.
    resumed = train(dataclasses.replace(resume_config(tmp_path / "run"), kimg=0.016), resume=True)
    assert resumed["status"] == "completed" and resumed["kimg"] == 0.016
