"""`python -m training` is `gan-studio-train`."""

from training.cli import run

run()
