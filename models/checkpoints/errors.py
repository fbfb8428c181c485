"""The one exception every checkpoint refusal raises, so callers catch a single type and show its message."""

from __future__ import annotations

import os
from pathlib import Path


class CheckpointError(ValueError):
    """A file could not be loaded or was refused; the message names the file and the exact reason."""

    def __init__(self, path: str | os.PathLike[str], reason: str, refused: bool = False):
        self.path, self.reason, self.refused = str(path), reason, refused
        verb = "refused to load" if refused else "cannot load"
        super().__init__(f"{verb} {Path(path).name}: {reason}")

    def __reduce__(self):  # keeps the error picklable (worker processes, logging handlers)
        return type(self), (self.path, self.reason, self.refused)
