"""Training: the Trainer, checkpoints, plots and the ``python -m cnn_xp.train`` command."""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .trainer import CheckpointWriteError, DivergedError, NonFiniteLossError, Trainer, TrainingInterrupted

__all__ = [
    "Checkpoint",
    "CheckpointWriteError",
    "DivergedError",
    "NonFiniteLossError",
    "Trainer",
    "TrainingInterrupted",
    "load_checkpoint",
    "save_checkpoint",
]
