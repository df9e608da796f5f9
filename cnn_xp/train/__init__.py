"""Training: the Trainer, checkpoints, plots and the ``python -m cnn_xp.train`` command."""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .trainer import CheckpointWriteError, NonFiniteLossError, Trainer, TrainingInterrupted

__all__ = [
    "Checkpoint",
    "CheckpointWriteError",
    "NonFiniteLossError",
    "Trainer",
    "TrainingInterrupted",
    "load_checkpoint",
    "save_checkpoint",
]
