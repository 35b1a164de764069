"""Reading a task's trained network from a file: a spikesim checkpoint or an official ``.pth``,
the same way for every task (each task supplies its own reader of the official format)."""
from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from ..io.checkpoint import is_spikesim_checkpoint
from ..train.trainer import load_trained


def load_model_file(path, dtype, from_official):
    """The network stored in ``path``: a spikesim checkpoint (``load_trained``), or otherwise an
    official ``.pth`` read by the task's ``from_official(path, dtype=...)``; (Network, meta)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if not is_spikesim_checkpoint(path):
        return from_official(path, dtype=dtype)
    return load_trained(path, dtype)
