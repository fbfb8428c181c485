"""Checkpoint formats: one `load_checkpoint` for every file an artist brings, and our own safetensors format.

NVIDIA network pickles (PyTorch, and TensorFlow StyleGAN2) are read by a restricted unpickler that never
runs code from the file, rosinality `.pt` files by torch's weights-only loader, and our `.safetensors` files
by safetensors; all of them give the same `CheckpointBundle`. Every refusal is a `CheckpointError` naming
the file and the reason.
"""

from models.checkpoints.bundle import CheckpointBundle, ModelMeta
from models.checkpoints.errors import CheckpointError
from models.checkpoints.loader import detect_format, load_checkpoint
from models.checkpoints.native import save_checkpoint

__all__ = [
    "CheckpointBundle",
    "CheckpointError",
    "ModelMeta",
    "detect_format",
    "load_checkpoint",
    "save_checkpoint",
]
