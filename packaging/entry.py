"""The frozen app's entry point: `gan-studio` exactly, after multiprocessing's hook for frozen programs."""

import multiprocessing
import sys

if __name__ == "__main__":
    # First thing: a child process started by multiprocessing in a frozen app re-runs this executable, and
    # freeze_support() turns that run into the child instead of a second copy of the app.
    multiprocessing.freeze_support()
    from studio.cli import main

    sys.exit(main())
