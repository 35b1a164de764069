"""The run manifest: what ran, from which code, with which libraries, on which machine.

The Trainer writes ``manifest.json`` into its run folder when a run starts
(:func:`collect`, :func:`write`) and appends a record to its ``resumes`` list each time the
run is resumed (:func:`record_resume`). Fields:

- ``date``: UTC, ISO 8601; ``command``: ``sys.argv``;
- ``git_commit``, ``git_dirty``: of the git repository holding the spikesim package (None
  when there is none, or git is missing); dirty = uncommitted changes or untracked files;
- ``versions``: python, numpy, numba, llvmlite, scipy, h5py, spikesim (None: not installed);
- ``seed``: the training seed; ``threads``: the kernel thread count;
- ``machine``: ``platform``, ``cpu`` (the model name from /proc/cpuinfo where present),
  ``cpu_count``, ``vector_flags``: avx2, avx512f, fma, neon, each True or False (None
  without /proc/cpuinfo), and ``kernel_target``: the CPU name the kernels are compiled for
  and its widest vector extension (``spikesim.backends.cpu.target.kernel_target``).

A resume record holds the same fields (without ``seed``) and the epoch and batch index the
run continued from. The file is replaced atomically (temporary file, then ``os.replace``).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from ..backends.cpu.target import kernel_target
from ..backends.cpu.threads import get_threads

FILE_NAME = "manifest.json"
VERSION = 1
PACKAGES = ("numpy", "numba", "llvmlite", "scipy", "h5py", "spikesim")
VECTOR_FLAGS = ("avx2", "avx512f", "fma", "neon")


def _git(root: Path, *args) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.SubprocessError):      # git missing, or hanging
        return None
    return out.stdout if out.returncode == 0 else None


def git_state() -> tuple:
    """(commit, dirty) of the repository that holds the spikesim package, or (None, None):
    no git, no repository, or one that does not track the package (an install inside some
    other repository's folder)."""
    pkg = Path(__file__).resolve().parents[1]
    if _git(pkg.parent, "ls-files", "--error-unmatch", str(pkg / "__init__.py")) is None:
        return None, None
    commit = _git(pkg.parent, "rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git(pkg.parent, "status", "--porcelain")
    return commit.strip(), None if status is None else bool(status.strip())


def versions() -> dict:
    """Versions of Python and of the packages a run depends on (None: not installed)."""
    from importlib import metadata
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        if name == "spikesim":
            from .. import __version__
            out[name] = __version__
            continue
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """The platform, the CPU model and whether the CPU has the vector extensions the kernels
    can use (``VECTOR_FLAGS``; on ARM, neon is listed as ``asimd`` in 64-bit mode)."""
    model, flags = None, None
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = None
    if text is not None:
        found = set()
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if model is None and key in ("model name", "hardware", "cpu model", "processor") \
                    and not value.strip().isdigit() and value.strip():
                model = value.strip()
            if key in ("flags", "features"):
                found |= set(value.split())
        if "asimd" in found:
            found.add("neon")
        flags = {f: f in found for f in VECTOR_FLAGS}
    return {"platform": platform.platform(), "machine": platform.machine(),
            "cpu": model or platform.processor() or None, "cpu_count": os.cpu_count(),
            "vector_flags": flags, "kernel_target": kernel_target()}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def collect(seed=None) -> dict:
    """The manifest of a run starting now in this process (``seed``: the training seed)."""
    commit, dirty = git_state()
    out = {"manifest_version": VERSION, "date": _now(), "command": list(sys.argv),
           "git_commit": commit, "git_dirty": dirty, "versions": versions()}
    if seed is not None:
        out["seed"] = seed
    out.update(threads=get_threads(), machine=machine(), resumes=[])
    return out


def write(path, data: dict):
    """Write ``data`` as JSON to ``path`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_result(path, record: dict, seed=None) -> Path:
    """Write a command's result ``record`` as JSON to ``path`` (folders made as needed,
    atomically) with the manifest of this process under ``run``: a result file says on which
    machine, code and libraries it was measured."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, {**record, "run": collect(seed)})
    return path


def record_resume(path, seed=None, **where) -> dict:
    """Append a resume record (this process's fields and ``where``: the epoch and batch index
    the run continues from) to the manifest at ``path``; a run started before manifests were
    written gets one, whose top-level fields are those of this process. Returns the manifest."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        data = collect(seed)
        data["started_before_manifest"] = True
    entry = collect()
    entry.pop("resumes")
    entry.pop("manifest_version")
    data.setdefault("resumes", []).append({**entry, **where})
    write(path, data)
    return data
