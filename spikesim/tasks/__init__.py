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
