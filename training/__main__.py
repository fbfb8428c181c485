"""`python -m training` is `gan-studio-train`."""

import sys

from training.cli import main

sys.exit(main())
