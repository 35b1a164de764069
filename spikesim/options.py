"""Command-line options shared by the verbs of every task, and the checks of their values and
output paths, worded for the command line (options, not keyword arguments).

``check_outputs(args)`` runs before any work starts (``spikesim.cli.main`` calls it): every
output path must be usable (a file option must not name a folder, a folder option must not name
a file, nothing may sit under a file, the nearest existing folder must be writable), and a
training ``--out`` that already holds a run is refused unless ``--resume`` continues it or
``--overwrite`` starts again (the old run is moved aside, never deleted). A refused command has
created nothing.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

#: files whose presence in a folder means a training run lives there
RUN_FILES = ("manifest.json", "history.json", "last.ckpt", "best.ckpt")
#: options naming output files: attribute name -> option as typed
FILE_OPTIONS = {"json": "--json", "save_predictions": "--save-predictions", "plot": "--plot"}


class OptionError(ValueError):
    """A bad option value or output path, in one line that names the option."""


# -- value types for argparse --------------------------------------------------------------------
def _number(kind, text: str, test, what: str):
    try:
        v = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if (kind is float and not math.isfinite(v)) or not test(v):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return v


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(int, text, lambda v: v >= 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(int, text, lambda v: v >= 0, "an integer >= 0")


def int_between(low: int, high: int, unit: str = ""):
    """argparse type factory: an integer from ``low`` to ``high`` inclusive."""
    what = f"an integer from {low} to {high}" + (f" ({unit})" if unit else "")

    def parse(text: str) -> int:
        return _number(int, text, lambda v: low <= v <= high, what)
    parse.__name__ = f"int_{low}_to_{high}"     # argparse names the type in some messages
    return parse


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(float, text, lambda v: v > 0, "a positive number")


def nonnegative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    return _number(float, text, lambda v: v >= 0, "a number >= 0")


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1)."""
    return _number(float, text, lambda v: 0 <= v < 1, "a number in [0, 1)")


def mean_std(text: str) -> tuple:
    """argparse type: "MEAN,STD" of a normal distribution, MEAN > 0 and STD >= 0 (a time
    constant's initial values)."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"must be MEAN,STD (two numbers), got {text!r}")
    mean = _number(float, parts[0], lambda v: v > 0, "MEAN,STD with a positive MEAN")
    std = _number(float, parts[1], lambda v: v >= 0, "MEAN,STD with STD >= 0")
    return (mean, std)


# -- options shared by the train verbs -----------------------------------------------------------
def add_run_args(parser, out_help: str = "folder for checkpoints, results and plots",
                 required: bool = True, seed: bool = True):
    """--out, --resume, --overwrite, --seed and --quiet of a training run."""
    parser.add_argument("--out", required=required, default=None, help=out_help)
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    g.add_argument("--overwrite", action="store_true",
                   help="start again in an --out that holds a run (the old run is moved aside "
                        "to OUT.replaced-<time>)")
    if seed:
        parser.add_argument("--seed", type=nonnegative_int, default=0,
                            help="seed of initialisation, batch order and validation split")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_dtype_arg(parser, default: str = "float32", help: str = "floating-point precision"):
    parser.add_argument("--dtype", choices=("float32", "float64"), default=default, help=help)


def add_device_arg(parser):
    """--device cpu|cuda: the backend the network runs on (``spikesim.backends``)."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the network runs: cpu, or cuda (an NVIDIA GPU; needs the "
                             "package numba-cuda)")


# -- output path checks --------------------------------------------------------------------------
def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _topmost_missing(path: Path) -> Path:
    """The highest ancestor of ``path`` (or itself) that does not exist: what mkdir -p makes."""
    while not path.parent.exists() and path.parent != path:
        path = path.parent
    return path


def _writable_place(option: str, path: Path):
    """The nearest existing folder above ``path`` must be a writable folder."""
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise OptionError(f"{option} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise OptionError(f"{option} {path}: the folder {base} is not writable")


def check_file_path(option: str, path) -> Path:
    """An output file ``path`` given as ``option``: not a folder, creatable or replaceable."""
    path = Path(path)
    if path.is_dir():
        raise OptionError(f"{option} {path}: is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise OptionError(f"{option} {path}: the file is not writable")
    _writable_place(option, path)
    return path


def check_folder_path(option: str, path) -> Path:
    """An output folder ``path`` given as ``option``: not a file, creatable or writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OptionError(f"{option} {path}: is a file, not a folder")
    _writable_place(option, path / "_")
    return path


def run_files(folder) -> list:
    """The files in ``folder`` that mark a training run there (``RUN_FILES``)."""
    folder = Path(folder)
    return [f for f in RUN_FILES if (folder / f).exists()] if folder.is_dir() else []


def check_run_folder(out, resume: bool, overwrite: bool) -> str | None:
    """Refuse an ``--out`` holding a run unless ``resume`` or ``overwrite``; with ``overwrite``,
    move the old run aside. Returns a line for the user, or None."""
    out = check_folder_path("--out", out)
    found = run_files(out)
    if not found:
        return f"--resume: no run in {out} to continue; starting a new one" if resume else None
    if resume:
        return None
    if not overwrite:
        raise OptionError(f"--out {out} already holds a run ({', '.join(found)}); add --resume "
                          "to continue it or --overwrite to start again")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    aside = out.with_name(f"{out.name}.replaced-{stamp}")
    out.rename(aside)
    return f"--overwrite: moved the previous run in {out} to {aside}"


def check_outputs(args, training: bool) -> list:
    """Check every output path of a parsed command line before any work starts (see the
    module's docstring). ``training``: the command trains into ``args.out`` (train, demo).
    Returns the folders that do not exist yet (to remove again, if still empty, when the
    command fails) and prints what it did."""
    created = []
    for attr, option in FILE_OPTIONS.items():
        if getattr(args, attr, None):
            check_file_path(option, args.__dict__[attr])
    out = getattr(args, "out", None)
    if out:
        if not Path(out).exists():
            created.append(_topmost_missing(Path(out)))
        if training:
            note = check_run_folder(out, getattr(args, "resume", False),
                                    getattr(args, "overwrite", False))
            if note:
                print(f"spikesim: {note}")
        else:
            check_folder_path("--out", out)
    return created


def remove_if_empty(folders) -> None:
    """Remove each folder tree that holds no file: the trace a failed command would otherwise
    leave of itself (``folders``: the topmost folders the command was to create)."""
    for folder in folders:
        p = Path(folder)
        if p.is_dir() and not any(files for _, _, files in os.walk(p)):
            shutil.rmtree(p, ignore_errors=True)
