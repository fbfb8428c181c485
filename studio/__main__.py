"""`python -m studio` is `gan-studio`."""

import sys

from studio.cli import main

sys.exit(main())
