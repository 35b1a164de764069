"""spikesim's own checkpoint format: one pickle-free ``.npz`` file.

Layout of the archive (``np.load(path, allow_pickle=False)`` reads it):

* ``param/<name>`` -- every model parameter, dtype and bytes unchanged;
* ``optim/<path>`` -- the array leaves of the (nested) optimizer state;
* ``__spikesim__`` -- a uint8 array holding UTF-8 JSON metadata: format tag
  and version, spikesim version, config, epoch, seed, extra, the parameter
  order and a skeleton of the optimizer state (its non-array leaves, the key
  types and where each array lives).

Files are written atomically (temporary file in the same directory, flush,
fsync, ``os.replace``), so an existing checkpoint is never left half-written.
JSON has no tuples: tuples in config/extra/optimizer scalars come back as
lists.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikesim.errors import CheckpointError

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "is_spikesim_checkpoint",
           "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "spikesim-checkpoint"
FORMAT_VERSION = 1
_META_KEY = "__spikesim__"
_PARAM = "param/"
_OPTIM = "optim/"

@dataclass
class Checkpoint:
    """Contents of a spikesim checkpoint."""

    params: dict[str, np.ndarray]
    config: dict
    optimizer_state: dict | None = None
    epoch: int = 0
    seed: int | None = None
    extra: dict | None = None
    format_version: int = FORMAT_VERSION
    spikesim_version: str = ""
    path: Path | None = field(default=None, compare=False)

def _spikesim_version() -> str:
    try:
        from spikesim import __version__
        return str(__version__)
    except Exception:  # pragma: no cover - version lookup must never break saving
        return "unknown"

def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")

def _check_array(arr, where: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.hasobject:
        raise CheckpointError(f"{where}: object arrays cannot be stored without pickle")
    return arr

# ---- optimizer state <-> (arrays, JSON skeleton) -------------------------------
def _flatten_optim(node, path: list[str], arrays: dict, used: set):
    if isinstance(node, dict):
        items = []
        for key, value in node.items():
            if isinstance(key, bool) or not isinstance(key, (str, int)):
                raise CheckpointError(
                    f"optimizer state keys must be str or int, got {key!r} "
                    f"at {'/'.join(path) or '<root>'}"
                )
            items.append([key, _flatten_optim(value, path + [str(key)], arrays, used)])
        return {"dict": items}
    if isinstance(node, (np.ndarray, np.generic)):
        name = _OPTIM + "/".join(path)
        base, n = name, 1
        while name in used:
            n += 1
            name = f"{base}#{n}"
        used.add(name)
        arrays[name] = _check_array(node, name)
        return {"array": name, "scalar": isinstance(node, np.generic)}
    if node is None or isinstance(node, (bool, int, float, str)) or isinstance(node, (list, tuple)):
        try:
            json.dumps(node, default=_json_default)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"optimizer state at {'/'.join(path)}: {exc}") from exc
        return {"value": node}
    raise CheckpointError(
        f"optimizer state at {'/'.join(path)}: unsupported leaf type {type(node).__name__}"
    )

def _unflatten_optim(node, arrays):
    if not isinstance(node, dict):
        raise CheckpointError("optimizer state skeleton is malformed")
    if "dict" in node:
        return {key: _unflatten_optim(value, arrays) for key, value in node["dict"]}
    if "array" in node:
        name = node["array"]
        if name not in arrays:
            raise CheckpointError(f"optimizer array {name!r} is missing from the checkpoint")
        arr = arrays[name]
        return arr[()] if node.get("scalar") else arr
    if "value" in node:
        return node["value"]
    raise CheckpointError("optimizer state skeleton is malformed")

# ---- save -----------------------------------------------------------------------
def save_checkpoint(path, params: dict[str, np.ndarray], config: dict,
                    optimizer_state: dict | None = None, epoch: int = 0,
                    seed: int | None = None, extra: dict | None = None) -> Path:
    """Write a checkpoint atomically to ``path`` (used as given; no suffix added).

    ``params`` maps names to arrays; ``optimizer_state`` is a nested dict with
    str/int keys whose leaves are arrays or JSON scalars; ``config`` and
    ``extra`` must be JSON-serialisable.  Returns the path written.
    """
    path = Path(path)
    if not isinstance(params, dict):
        raise CheckpointError("params must be a dict of name -> array")
    arrays: dict[str, np.ndarray] = {}
    names = []
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"parameter names must be non-empty strings, got {name!r}")
        arrays[_PARAM + name] = _check_array(value, f"parameter {name!r}")
        names.append(name)
    skeleton = None
    if optimizer_state is not None:
        if not isinstance(optimizer_state, dict):
            raise CheckpointError("optimizer_state must be a dict or None")
        skeleton = _flatten_optim(optimizer_state, [], arrays, set())
    if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
        raise CheckpointError(f"epoch must be an int, got {epoch!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise CheckpointError(f"seed must be an int or None, got {seed!r}")
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "spikesim_version": _spikesim_version(),
        "config": config,
        "epoch": int(epoch),
        "seed": None if seed is None else int(seed),
        "extra": extra,
        "params": names,
        "optimizer": skeleton,
    }
    try:
        text = json.dumps(meta, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"config/extra cannot be stored as JSON: {exc}") from exc
    arrays[_META_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)
    return path

def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)

# ---- load -----------------------------------------------------------------------
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError)

def _read_meta(npz, path) -> dict:
    if _META_KEY not in npz.files:
        raise CheckpointError(f"{path}: not a spikesim checkpoint (no {_META_KEY} entry)")
    raw = npz[_META_KEY]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path}: metadata entry is malformed")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: metadata is corrupt: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not a spikesim checkpoint")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r} "
            f"is newer than supported ({FORMAT_VERSION})"
        )
    return meta

def _open_npz(path):
    obj = np.load(path, allow_pickle=False)
    if not isinstance(obj, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path}: not a spikesim checkpoint (plain .npy data)")
    return obj

def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no pickle involved).

    Raises :class:`CheckpointError` if the file is missing, truncated or
    corrupt, or is not a spikesim checkpoint (for example a ``.pth`` file).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with _open_npz(path) as npz:
            meta = _read_meta(npz, path)
            arrays = {name: npz[name] for name in npz.files if name != _META_KEY}
    except CheckpointError:
        raise
    except _READ_ERRORS as exc:
        raise CheckpointError(
            f"{path}: not a readable spikesim checkpoint (corrupt, truncated or foreign): "
            f"{type(exc).__name__}: {exc}"
        ) from exc

    names = meta.get("params")
    if not isinstance(names, list):
        raise CheckpointError(f"{path}: metadata lacks the parameter list")
    params = {}
    for name in names:
        key = _PARAM + str(name)
        if key not in arrays:
            raise CheckpointError(f"{path}: parameter {name!r} is missing")
        params[name] = arrays[key]
    optim = None
    if meta.get("optimizer") is not None:
        optim = _unflatten_optim(meta["optimizer"], arrays)
    config = meta.get("config")
    return Checkpoint(
        params=params,
        config=config if config is not None else {},
        optimizer_state=optim,
        epoch=int(meta.get("epoch", 0)),
        seed=meta.get("seed"),
        extra=meta.get("extra"),
        format_version=meta["format_version"],
        spikesim_version=str(meta.get("spikesim_version", "")),
        path=path,
    )

def is_spikesim_checkpoint(path) -> bool:
    """True if ``path`` is a readable spikesim checkpoint (checks the metadata only)."""
    path = Path(path)
    try:
        if not path.is_file() or not zipfile.is_zipfile(path):
            return False
        with _open_npz(path) as npz:
            _read_meta(npz, path)
        return True
    except (CheckpointError, *_READ_ERRORS):
        return False
