"""QTDB ECG wave segmentation data set (spike-encoded), as used by Yin et al.

The two files ``QTDB_train.mat`` (618 sequences) and ``QTDB_test.mat`` (141
sequences) are the level-crossing encoded version of PhysioNet's QT database
published with the reference code of Yin, Corradi & Bohté (GitHub
``byin-cwi/Efficient-spiking-networks``).  Each file holds

* ``x``: int16 (N, 1301, 4) spike trains (2 ECG leads x up/down channels),
* ``y``: uint8 (N, 1301, 6) one-hot labels over :data:`CLASSES`; roughly
  8-10 % of the steps are all zero, i.e. unlabelled,
* ``t``: (N, 1301) step index and ``max_i``: (N, 1) sequence lengths.

Known artifact: the published ``x`` has ``x[:, 1300, 0] == -1`` in every
sequence.  :func:`load_qtdb` clips ``x`` to {0, 1}, so that value becomes 0
(no spike).

Unlabelled steps: the reference code takes ``argmax`` of ``y``, which maps an
all-zero row to class 0 ("P").  ``unlabelled="class0"`` reproduces this (the
official policy, needed to compare with published numbers);
``unlabelled="mask"`` marks those steps with label -1 instead so they can be
left out of the loss and of the accuracy.  Either way ``QTDBSet.labelled``
tells which steps carried a label.

Where the files are looked up: see :func:`find_qtdb_dir`.  With
``download=True`` missing files are fetched from :data:`QTDB_URLS` (or from a
base URL given as argument or in ``$SPIKESIM_QTDB_URL``) and checked against
:data:`QTDB_SHA256` before use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikesim.data.download import default_data_dir, fetch
from spikesim.errors import DataError

__all__ = [
    "CLASSES",
    "N_STEPS",
    "N_CHANNELS",
    "N_CLASSES",
    "QTDB_FILES",
    "QTDB_SHA256",
    "QTDB_BASE_URL",
    "QTDB_URLS",
    "QTDBSet",
    "find_qtdb_dir",
    "qtdb_urls",
    "load_qtdb",
    "train_val_split",
    "level_crossing_encode",
]

CLASSES = ("P", "PQ", "QR", "RS", "ST", "TP")
N_CLASSES = len(CLASSES)
N_STEPS = 1301
N_CHANNELS = 4

QTDB_FILES = {"train": "QTDB_train.mat", "test": "QTDB_test.mat"}

#: SHA-256 of the published files; downloads are refused when they differ.
QTDB_SHA256 = {
    "QTDB_train.mat": "72d1a10c96f1540880447e07256835d66da419c0b34f3dff495731a7928c5bc7",
    "QTDB_test.mat": "916f11e21679a5b61988305bbb7cd1e6df8b34f1ed4a157a7a4e295d400ef232",
}

#: Environment variable that overrides :data:`QTDB_BASE_URL`.
QTDB_URL_ENV_VAR = "SPIKESIM_QTDB_URL"

#: The ``data/`` folder of the reference repository on its ``main`` branch.
#: Its README says the encoded QTDB set "is attached in /data/ folder";
#: ``data/QTDB_train.mat`` is known to be there.  ``data/QTDB_test.mat`` is
#: assumed next to it; ``NMI_vis/ecg/QTDB_test.mat`` of the same repository
#: is tried as a fallback.  Checksums guard against a wrong file either way.
QTDB_BASE_URL = "https://raw.githubusercontent.com/byin-cwi/Efficient-spiking-networks/main/data"

_REPO_RAW = "https://raw.githubusercontent.com/byin-cwi/Efficient-spiking-networks/main"

#: Candidate URLs per file, tried in order (best effort, see QTDB_BASE_URL).
QTDB_URLS = {
    "QTDB_train.mat": (f"{QTDB_BASE_URL}/QTDB_train.mat",),
    "QTDB_test.mat": (
        f"{QTDB_BASE_URL}/QTDB_test.mat",
        f"{_REPO_RAW}/NMI_vis/ecg/QTDB_test.mat",
    ),
}


@dataclass
class QTDBSet:
    """One split of QTDB.

    ``x``: (N, T, 4) spikes in {0, 1} of the requested dtype.
    ``labels``: (N, T) int64 class indices into :data:`CLASSES`; unlabelled
    steps are 0 under the "class0" policy and -1 under "mask".
    ``lengths``: (N,) int64 sequence lengths (``max_i``).
    ``labelled``: (N, T) bool, True where ``y`` had a label.
    ``path``: the .mat file read.
    """

    x: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray
    labelled: np.ndarray
    path: Path
    split: str = "train"
    unlabelled: str = "class0"

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def unlabelled_fraction(self) -> float:
        """Fraction of steps (within each sequence's length) that carry no label."""
        t = np.arange(self.labelled.shape[1])
        valid = t[None, :] < self.lengths[:, None]
        return float(1.0 - self.labelled[valid].mean()) if valid.any() else 0.0


def find_qtdb_dir(data_dir=None) -> Path:
    """Folder holding the QTDB .mat files.

    ``data_dir`` (default :func:`default_data_dir`) may hold the files
    directly or in a ``qtdb/`` subfolder; both ``/path/data`` and
    ``/path/data/qtdb`` work.  When neither has any QTDB file, the folder
    where they should go (``data_dir/qtdb``, or ``data_dir`` itself when it is
    already named ``qtdb``) is returned, which is also where downloads land.
    """
    base = Path(default_data_dir() if data_dir is None else data_dir).expanduser()
    names = QTDB_FILES.values()
    if any((base / n).is_file() for n in names):
        return base
    sub = base / "qtdb"
    if any((sub / n).is_file() for n in names):
        return sub
    return base if base.name == "qtdb" else sub


def qtdb_urls(base_url=None) -> dict:
    """Candidate download URLs per file name.

    ``base_url`` (or else ``$SPIKESIM_QTDB_URL``) replaces the default source:
    the files are then expected at ``<base_url>/QTDB_train.mat`` etc.
    """
    base = base_url or os.environ.get(QTDB_URL_ENV_VAR, "").strip() or None
    if base is None:
        return {k: tuple(v) for k, v in QTDB_URLS.items()}
    base = base.rstrip("/")
    return {name: (f"{base}/{name}",) for name in QTDB_FILES.values()}


def _download(name: str, dest: Path, base_url=None, timeout: float = 30) -> None:
    urls = qtdb_urls(base_url)[name]
    errors = []
    for url in urls:
        try:
            fetch(url, dest, QTDB_SHA256[name], timeout=timeout, progress=True)
            return
        except DataError as exc:
            errors.append(str(exc))
    raise DataError(
        f"could not download {name}: " + " | ".join(errors)
        + f". Place {name} by hand in {dest.parent}"
    )


def _read_mat(path: Path) -> dict:
    import scipy.io

    try:
        return scipy.io.loadmat(str(path), variable_names=("x", "y", "max_i"))
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise DataError(f"{path}: MATLAB v7.3 files are not supported; "
                        f"expected a v5 .mat file ({exc})") from exc
    except Exception as exc:  # scipy raises many types for corrupt input
        raise DataError(f"{path} is not a readable .mat file: {type(exc).__name__}: {exc}") from exc


def load_qtdb(
    data_dir=None,
    split: str = "train",
    unlabelled: str = "class0",
    download: bool = False,
    dtype=np.float32,
    base_url=None,
) -> QTDBSet:
    """Load one split ("train" or "test") of the spike-encoded QTDB set.

    ``unlabelled`` is "class0" (official: all-zero label rows become class 0)
    or "mask" (they become -1).  ``x`` is clipped to {0, 1} (see module doc
    about the -1 artifact) and cast to ``dtype``.  With ``download=True`` a
    missing file is fetched into :func:`find_qtdb_dir` and its SHA-256 checked;
    ``base_url`` overrides the source.  Raises :class:`DataError` when the
    file is missing, unreadable or not in the expected layout.
    """
    if split not in QTDB_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if unlabelled not in ("class0", "mask"):
        raise ValueError(f"unlabelled must be 'class0' or 'mask', got {unlabelled!r}")

    folder = find_qtdb_dir(data_dir)
    name = QTDB_FILES[split]
    path = folder / name
    if not path.is_file():
        if download:
            _download(name, path, base_url=base_url)
        else:
            raise DataError(
                f"QTDB file {path} not found. Fetch it with --download (download=True) "
                f"or place {name} by hand in {folder}"
            )

    mat = _read_mat(path)
    for key in ("x", "y"):
        if key not in mat:
            found = sorted(k for k in mat if not k.startswith("__"))
            raise DataError(f"{path}: expected a variable {key!r}, found only {found}")
    x_raw = np.asarray(mat["x"])
    y_raw = np.asarray(mat["y"])
    if x_raw.ndim != 3 or x_raw.shape[1:] != (N_STEPS, N_CHANNELS):
        raise DataError(
            f"{path}: expected x of shape (N, {N_STEPS}, {N_CHANNELS}), found {x_raw.shape}")
    if y_raw.ndim != 3 or y_raw.shape[1:] != (N_STEPS, N_CLASSES):
        raise DataError(
            f"{path}: expected y of shape (N, {N_STEPS}, {N_CLASSES}), found {y_raw.shape}")
    n = x_raw.shape[0]
    if y_raw.shape[0] != n:
        raise DataError(
            f"{path}: x has {n} sequences but y has {y_raw.shape[0]}; expected the same N")

    x = np.clip(x_raw, 0, 1).astype(dtype, copy=False)
    labelled = y_raw.sum(axis=-1) > 0
    labels = np.argmax(y_raw, axis=-1).astype(np.int64)
    labels[~labelled] = 0 if unlabelled == "class0" else -1

    if "max_i" in mat:
        lengths = np.asarray(mat["max_i"]).reshape(-1).astype(np.int64)
        if lengths.shape[0] != n:
            raise DataError(f"{path}: expected max_i with {n} entries, "
                            f"found shape {np.shape(mat['max_i'])}")
        if lengths.min(initial=1) < 1 or lengths.max(initial=0) > N_STEPS:
            raise DataError(f"{path}: expected max_i within 1..{N_STEPS}, "
                            f"found {lengths.min()}..{lengths.max()}")
    else:
        lengths = np.full(n, N_STEPS, dtype=np.int64)

    return QTDBSet(x=x, labels=labels, lengths=lengths, labelled=labelled, path=path,
                   split=split, unlabelled=unlabelled)


def train_val_split(n: int, val_fraction: float = 0.1, seed: int = 0):
    """Seeded split of ``range(n)`` into sorted, disjoint (train_idx, val_idx).

    The validation set has ``int(n * val_fraction)`` items (61 of 618, as in
    the reference code).  Same arguments, same result.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(n * val_fraction)
    return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)


def level_crossing_encode(signal, threshold: float = 0.03, window: int = 5, order: int = 3,
                          normalise: bool = False) -> np.ndarray:
    """Turn raw ECG leads into up/down spike trains (level-crossing code).

    ``signal`` is (T,) or (T, leads).  Steps: optionally (``normalise=True``)
    min-max scale each lead to [0, 1] (a flat lead becomes 0); smooth each lead
    with a Savitzky-Golay filter (``window``, ``order``; ``window=0`` or None
    skips smoothing); then for each step i < T-1 emit an "up" spike when
    ``s[i+1] - s[i] >= threshold`` and a "down" spike when
    ``s[i] - s[i+1] >= threshold``.  The last step never spikes.

    Returns float32 (T, 2 * leads) with channels ordered lead by lead:
    ``[lead0_up, lead0_down, lead1_up, lead1_down, ...]``.  (The channel
    order of the published QTDB files is not guaranteed to match this.)
    """
    s = np.asarray(signal, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2:
        raise ValueError(f"signal must be (T,) or (T, leads), got shape {np.shape(signal)}")
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    T, leads = s.shape
    if normalise and T > 0:
        lo = s.min(axis=0, keepdims=True)
        span = s.max(axis=0, keepdims=True) - lo
        s = np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 0.0)
    if window:
        if T < window:
            raise ValueError(f"signal has {T} steps, fewer than the smoothing window {window}")
        from scipy.signal import savgol_filter

        s = savgol_filter(s, window_length=window, polyorder=order, axis=0)
    out = np.zeros((T, 2 * leads), dtype=np.float32)
    if T > 1:
        d = s[1:] - s[:-1]
        out[:-1, 0::2] = d >= threshold
        out[:-1, 1::2] = -d >= threshold
    return out
