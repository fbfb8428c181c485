"""`python -m training` is `gan-studio-train`."""

import os
import sys

from training.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # Under torchrun, a completed run (checkpoints written, process group destroyed) was still aborted at
    # interpreter exit now and then ("terminate called without an active exception", SIGABRT in CI): a
    # torch thread torn down with the process. Nothing is left to save, so leave without that teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
