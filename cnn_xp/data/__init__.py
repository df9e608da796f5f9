"""Feeding data to the networks: :class:`DataLoader`."""

from .loader import DataLoader

__all__ = ["DataLoader"]
