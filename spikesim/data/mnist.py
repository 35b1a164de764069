"""Readers for MNIST-style data: IDX files (gzip or raw), the 5k CSV subset, Fashion-MNIST.

Everything returns plain NumPy arrays: images as ``uint8`` with shape ``(N, H, W)``
(``(N, 28, 28)`` for MNIST) and labels as ``int64`` with shape ``(N,)``.
Any problem with a file (missing, corrupt, wrong layout) raises
:class:`spikesim.errors.DataError` with the file name and what was expected vs found.

File layout understood by :func:`load_mnist` (inside the folder found by
:func:`find_mnist_dir`)::

    t10k-images-idx3-ubyte[.gz]   t10k-labels-idx1-ubyte[.gz]    -> split="test"
    train-images-idx3-ubyte[.gz]  train-labels-idx1-ubyte[.gz]   -> split="train" (preferred)
    mnist_5k_train.csv[.gz]                                      -> split="train" fallback

Fashion-MNIST uses the same IDX names; on Debian/Ubuntu it comes from the package
``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``), which installs
the files under ``/usr/share/datasets/fashion-mnist``.
"""
from __future__ import annotations

import gzip
import io
import os
import zlib
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from spikesim.errors import DataError

__all__ = [
    "read_idx",
    "load_idx_pair",
    "load_mnist_csv",
    "find_mnist_dir",
    "load_mnist",
    "load_fashion_mnist",
    "stratified_order",
    "FASHION_MNIST_DIR",
    "MNIST_CSV_NAME",
]

PathLike = Union[str, "os.PathLike[str]"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
MNIST_CSV_NAME = "mnist_5k_train.csv"

_GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> (numpy dtype as stored, i.e. big-endian, native dtype returned)
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_IDX_STEMS = {
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
}


# --------------------------------------------------------------------------- helpers
def _read_bytes(path: PathLike) -> bytes:
    """Whole file content, transparently gunzipped when it starts with 1f 8b."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found (expected an existing data file)")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read file ({exc})") from exc
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"{p}: corrupt gzip stream (file starts with gzip magic 1f 8b "
                f"but cannot be decompressed: {exc})"
            ) from exc
    return raw


def _find_file(folder: Path, stem: str) -> Optional[Path]:
    """``folder/stem.gz`` or ``folder/stem`` (also the ``stem.idx`` spellings), first found."""
    dotted = stem.replace("-idx", ".idx")  # e.g. t10k-images.idx3-ubyte (torchvision-style)
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        cand = folder / name
        if cand.is_file():
            return cand
    return None


# --------------------------------------------------------------------------- IDX
def read_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (gzip detected by its magic bytes, not the suffix).

    The header is ``00 00 <type code> <ndim>`` followed by ``ndim`` big-endian
    int32 sizes, then the payload in big-endian order. Supported type codes:
    0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
    The returned array has native byte order. The payload must have exactly the
    size implied by the dims; anything shorter or longer is a :class:`DataError`.
    """
    p = Path(path)
    data = _read_bytes(p)
    if len(data) < 4:
        raise DataError(
            f"{p}: too short for an IDX header (expected at least 4 bytes, found {len(data)})"
        )
    if data[0] != 0 or data[1] != 0:
        raise DataError(
            f"{p}: bad IDX magic (expected first two bytes 00 00, found "
            f"{data[0]:02x} {data[1]:02x}); not an IDX file"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise DataError(f"{p}: unknown IDX type code 0x{code:02X} (expected one of {known})")
    if ndim == 0:
        raise DataError(f"{p}: IDX header declares 0 dimensions (expected at least 1)")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(
            f"{p}: truncated IDX header (expected {header_len} bytes for {ndim} dims, "
            f"found {len(data)})"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    if any(d < 0 for d in dims):
        raise DataError(f"{p}: negative dimension in IDX header {dims}")
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header_len
    if found < expected:
        raise DataError(
            f"{p}: truncated IDX payload (dims {dims} of {dtype.name} need {expected} bytes, "
            f"found {found})"
        )
    if found > expected:
        raise DataError(
            f"{p}: trailing garbage after IDX payload (dims {dims} of {dtype.name} need "
            f"{expected} bytes, found {found}: {found - expected} extra)"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def load_idx_pair(
    images_path: PathLike, labels_path: PathLike, n_classes: int = 10
) -> Tuple[np.ndarray, np.ndarray]:
    """Load an image IDX file and its label IDX file and check they belong together.

    Returns ``(images uint8 (N, H, W), labels int64 (N,))``. Raises :class:`DataError`
    if the image file is not 3-D uint8, the label file is not 1-D integer, the counts
    differ, or a label is outside ``0 .. n_classes-1``.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, H, W), "
            f"found {images.dtype.name} array of shape {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{labels_path}: expected a 1-D integer label array, "
            f"found {labels.dtype.name} array of shape {labels.shape}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{images_path} / {labels_path}: image and label counts differ "
            f"({images.shape[0]} images vs {labels.shape[0]} labels); mismatched pair?"
        )
    labels = labels.astype(np.int64)
    _check_labels(labels, n_classes, labels_path)
    return images, labels


def _check_labels(labels: np.ndarray, n_classes: int, where: PathLike) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(
            f"{where}: labels out of range (expected 0..{n_classes - 1}, "
            f"found {int(labels.min())}..{int(labels.max())})"
        )


# --------------------------------------------------------------------------- CSV
def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def load_mnist_csv(
    path: PathLike, n_pixels: int = 784, n_classes: int = 10
) -> Tuple[np.ndarray, np.ndarray]:
    """Load MNIST from CSV: each row is ``n_pixels`` values 0..255 then the label.

    Gzip or plain text (detected by magic bytes). A first line containing any
    non-numeric field is treated as a header and skipped. Returns
    ``(images uint8 (N, s, s), labels int64 (N,))`` with ``s*s == n_pixels``.
    """
    p = Path(path)
    text = _read_bytes(p).decode("utf-8", errors="replace")
    lines = text.splitlines()
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first < len(lines) and not all(_is_number(t) for t in lines[first].split(",")):
        first += 1  # header line
    body = [ln for ln in lines[first:] if ln.strip()]
    n_cols = n_pixels + 1
    if not body:
        raise DataError(f"{p}: no data rows (expected rows of {n_cols} comma-separated values)")
    for i, ln in enumerate(body):
        c = ln.count(",") + 1
        if c != n_cols:
            raise DataError(
                f"{p}: wrong column count in data row {i + 1} (expected {n_cols}: "
                f"{n_pixels} pixels + label, found {c})"
            )
    try:
        values = np.loadtxt(io.StringIO("\n".join(body)), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise DataError(f"{p}: non-numeric value in CSV ({exc})") from exc
    pix, lab = values[:, :n_pixels], values[:, n_pixels]
    if (not np.all(np.isfinite(pix)) or pix.min() < 0 or pix.max() > 255
            or np.any(pix != np.round(pix))):
        bad = np.argwhere(~((pix >= 0) & (pix <= 255) & (pix == np.round(pix))))[0]
        raise DataError(
            f"{p}: pixel value out of range in data row {bad[0] + 1}, column {bad[1] + 1} "
            f"(expected integers 0..255, found {pix[bad[0], bad[1]]!r})"
        )
    if np.any(lab != np.round(lab)):
        raise DataError(
            f"{p}: non-integer label in last column (expected integers 0..{n_classes - 1})")
    side = int(round(np.sqrt(n_pixels)))
    shape = (pix.shape[0], side, side) if side * side == n_pixels else pix.shape
    images = pix.astype(np.uint8).reshape(shape)
    labels = lab.astype(np.int64)
    _check_labels(labels, n_classes, p)
    return images, labels


# --------------------------------------------------------------------------- folders
def _default_data_dir() -> Path:
    env = os.environ.get("SPIKESIM_DATA")
    return Path(env).expanduser() if env else Path("~/.cache/spikesim").expanduser()


def _holds_mnist(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    stems = [s for pair in _IDX_STEMS.values() for s in pair] + [MNIST_CSV_NAME]
    return any(_find_file(folder, s) is not None for s in stems)


def find_mnist_dir(data_dir: Optional[PathLike] = None) -> Path:
    """Folder holding the MNIST files: ``data_dir`` itself or ``data_dir/mnist``.

    ``data_dir`` defaults to ``$SPIKESIM_DATA``, else ``~/.cache/spikesim``.
    Raises :class:`DataError` listing the places looked at when nothing is found.
    """
    base = Path(data_dir).expanduser() if data_dir is not None else _default_data_dir()
    tried = [base, base / "mnist"]
    for cand in tried:
        if _holds_mnist(cand):
            return cand
    raise DataError(
        "MNIST files not found (looked in " + ", ".join(str(t) for t in tried) + "; expected "
        "t10k-images-idx3-ubyte[.gz], train-images-idx3-ubyte[.gz] or "
        f"{MNIST_CSV_NAME}[.gz]). Pass data_dir or set SPIKESIM_DATA."
    )


# --------------------------------------------------------------------------- subsets
def stratified_order(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A seeded ordering of all indices whose every prefix is class-balanced.

    Each class's indices are shuffled with ``np.random.default_rng(seed)``; the
    element of rank ``r`` in class ``c`` (of size ``n_c``) gets the key
    ``(r + 0.5) / n_c`` and the order sorts by key (ties broken at random).
    Any prefix of length ``L`` then holds each class in proportion to its
    frequency, up to rounding (exactly ``L/10`` per class when the 10 classes are
    equal-sized and ``L`` is a multiple of 10). Prefixes are nested: the first
    100 are contained in the first 1000.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    n = labels.shape[0]
    keys = np.empty(n, dtype=np.float64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.size)]
        keys[idx] = (np.arange(idx.size) + 0.5) / idx.size
    ties = rng.random(n)
    return np.lexsort((ties, keys)).astype(np.int64)


def _subset(images, labels, limit, seed):
    if limit is None:
        return images, labels
    limit = int(limit)
    if limit <= 0:
        raise ValueError(f"limit must be a positive integer, got {limit}")
    order = stratified_order(labels, seed)[:limit]
    return images[order], labels[order]


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


# --------------------------------------------------------------------------- loaders
def load_mnist(
    data_dir: Optional[PathLike] = None,
    split: str = "train",
    limit: Optional[int] = None,
    shuffle_seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Load MNIST images ``uint8 (N, 28, 28)`` and labels ``int64 (N,)``.

    ``split="test"`` reads the t10k IDX pair. ``split="train"`` reads the full
    ``train-*-idx*-ubyte`` pair when present, else the 5 000-image CSV subset
    ``mnist_5k_train.csv.gz`` (which is sorted by class).

    Without ``limit`` the arrays come in file order. With ``limit`` the result is
    the first ``limit`` items of :func:`stratified_order` seeded by
    ``shuffle_seed``: a reproducible, class-balanced, class-interleaved subset
    (e.g. ``limit=1000`` from the CSV gives exactly 100 per class).
    """
    split = _check_split(split)
    folder = find_mnist_dir(data_dir)
    img_stem, lab_stem = _IDX_STEMS[split]
    img_path, lab_path = _find_file(folder, img_stem), _find_file(folder, lab_stem)
    if img_path is not None and lab_path is not None:
        images, labels = load_idx_pair(img_path, lab_path)
    elif split == "train" and _find_file(folder, MNIST_CSV_NAME) is not None:
        images, labels = load_mnist_csv(_find_file(folder, MNIST_CSV_NAME))
    else:
        extra = f" or {MNIST_CSV_NAME}[.gz]" if split == "train" else ""
        raise DataError(
            f"{folder}: MNIST {split} split not found (expected {img_stem}[.gz] and "
            f"{lab_stem}[.gz]{extra})"
        )
    return _subset(images, labels, limit, shuffle_seed)


def _find_fashion_pair(folder: Path, split: str) -> Optional[Tuple[Path, Path]]:
    img_stem, lab_stem = _IDX_STEMS[split]
    # the folder itself, then one or two levels below (package layouts vary)
    candidates = [folder] + sorted(p for p in folder.glob("*") if p.is_dir()) + sorted(
        p for p in folder.glob("*/*") if p.is_dir()
    )
    for cand in candidates:
        img, lab = _find_file(cand, img_stem), _find_file(cand, lab_stem)
        if img is not None and lab is not None:
            return img, lab
    return None


def load_fashion_mnist(
    data_dir: PathLike = FASHION_MNIST_DIR,
    split: str = "train",
    limit: Optional[int] = None,
    shuffle_seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Load Fashion-MNIST (60k train / 10k test) from its IDX files.

    Default location is where the Debian package ``dataset-fashion-mnist`` puts
    them, ``/usr/share/datasets/fashion-mnist``; files may be gzip or raw and may
    sit in that folder or up to two levels below. ``limit``/``shuffle_seed`` act
    as in :func:`load_mnist`.
    """
    split = _check_split(split)
    folder = Path(data_dir).expanduser()
    pair = _find_fashion_pair(folder, split) if folder.is_dir() else None
    if pair is None:
        img_stem, lab_stem = _IDX_STEMS[split]
        raise DataError(
            f"{folder}: Fashion-MNIST {split} files not found (expected {img_stem}[.gz] and "
            f"{lab_stem}[.gz]). Install them with `apt-get install dataset-fashion-mnist` "
            "or pass data_dir pointing at a folder holding the IDX files."
        )
    images, labels = load_idx_pair(*pair)
    return _subset(images, labels, limit, shuffle_seed)
