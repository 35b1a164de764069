"""The tasks: data, network and defaults of each, and their command-line verbs.

Each task module provides ``add_<verb>_args(parser, name)`` and ``run_<verb>(args)`` for the
verbs it supports (train, eval, energy). ``TASKS`` names them."""
from __future__ import annotations

import importlib

TASKS = {"ecg": "spikesim.tasks.ecg", "smnist": "spikesim.tasks.smnist",
         "psmnist": "spikesim.tasks.smnist", "shd": "spikesim.tasks.shd",
         "ssc": "spikesim.tasks.shd", "demo": "spikesim.tasks.synthetic"}


def task_module(name: str):
    """The module of task ``name``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name])


def load_model_file(path, dtype, from_official):
    """The network stored in ``path``: a spikesim checkpoint (``load_trained``), or otherwise an
    official ``.pth`` read by the task's ``from_official(path, dtype=...)``; (Network, meta)."""
    from pathlib import Path

    from ..errors import CheckpointError
    from ..io.checkpoint import is_spikesim_checkpoint
    from ..train.trainer import load_trained
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if not is_spikesim_checkpoint(path):
        return from_official(path, dtype=dtype)
    return load_trained(path, dtype)
