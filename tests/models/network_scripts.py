"""Shared by the tests of scripts/widen_generator.py and scripts/grow_generator.py: loading a script as a module,
and rendering a generator's first seeds."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import torch

from models.seeds import z_from_seed

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(G, seeds=range(4)) -> torch.Tensor:
    z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds])
    with torch.inference_mode():
        return G.render(z, "z", noise_mode="const")
