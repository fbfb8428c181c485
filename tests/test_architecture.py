"""The import walls of ARCHITECTURE.md, checked by import-linter (contracts in pyproject.toml)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("models", "training", "studio")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is part of the dev extra: pip install -e '.[dev]'"
    env = {**os.environ, "PYTHONPATH": str(root)}  # the packages under `root`, not an installed copy
    return subprocess.run([lint, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    "module, source, contract",
    [
        # Indirect: the UI module pulls in Qt, which the old per-package rules let through.
        ("studio/engine/probe.py", "from studio.ui import theme\n", "layers"),
        ("training/probe.py", "from studio.engine import paths\n", "layers"),
        ("models/probe.py", "import training.config\n", "layers"),
        ("studio/engine/probe.py", "from training.scan import scan_sources\n", "public facade"),
    ],
)
def test_a_wall_breach_is_caught(tmp_path, module, source, contract):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    (tmp_path / module).write_text(source)
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if line.endswith(" BROKEN")]
    assert len(broken) >= 1 and any(contract in line for line in broken), done.stdout[-3000:]
    assert module.removesuffix(".py").replace("/", ".") in done.stdout
