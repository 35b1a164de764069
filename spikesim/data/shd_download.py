"""Download the Spiking Heidelberg Digits (SHD) and Spiking Speech Commands (SSC).

The official files are served gzip-compressed from :data:`DEFAULT_BASE_URL`
(``shd_train.h5.gz``, ``shd_test.h5.gz``, ``ssc_train.h5.gz``,
``ssc_valid.h5.gz``, ``ssc_test.h5.gz``) next to a checksum list
``md5sums.txt`` in the format ``md5sum`` writes.  :func:`download` reads that
list at download time, fetches each file with
:func:`spikesim.data.download.fetch`, which refuses a file whose MD5 differs
from the list, and decompresses it to ``<data_dir>/<dataset>_<split>.h5``.

Every file appears under its final name only once complete: downloads and
decompression go to temporary files in ``data_dir`` that are moved into place
with ``os.replace``, and are removed when anything fails.

The source is ``base_url`` when given, else ``$SPIKESIM_SHD_URL`` when set and
non-empty, else :data:`DEFAULT_BASE_URL`; a mirror only needs to serve the same
file names and ``md5sums.txt``.
"""

from __future__ import annotations

import gzip
import http.client
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from spikesim.data.download import discard, fetch, file_digest
from spikesim.errors import DataError

__all__ = [
    "CHECKSUM_FILE",
    "DEFAULT_BASE_URL",
    "SPLITS",
    "URL_ENV_VAR",
    "download",
    "file_name",
    "read_checksums",
    "resolve_base_url",
]

#: Where the official files are served.
DEFAULT_BASE_URL = "https://zenkelab.org/datasets/"

#: Environment variable that replaces :data:`DEFAULT_BASE_URL`.
URL_ENV_VAR = "SPIKESIM_SHD_URL"

#: Name of the published checksum list, relative to the base URL.
CHECKSUM_FILE = "md5sums.txt"

#: The splits of each data set, in the order :func:`download` fetches them.
SPLITS = {
    "shd": ("train", "test"),
    "ssc": ("train", "valid", "test"),
}

# One md5sum line: 32 hex digits, a space, then " " (text mode) or "*" (binary
# mode) before the file name.  Extra blanks between the two are tolerated.
_MD5_LINE = re.compile(r"^([0-9A-Fa-f]{32})[ \t]+\*?(\S.*?)\s*$")

# The checksum list is a few lines; anything much larger is not that list.
_MAX_LIST_BYTES = 1 << 20

_CHUNK = 1 << 16


def resolve_base_url(base_url: str | None = None) -> str:
    """The base URL to download from, always ending in "/".

    ``base_url`` when given and non-empty, else ``$SPIKESIM_SHD_URL`` when set
    and non-empty, else :data:`DEFAULT_BASE_URL`.
    """
    base = (base_url or "").strip() or os.environ.get(URL_ENV_VAR, "").strip()
    base = base or DEFAULT_BASE_URL
    return base.rstrip("/") + "/"


def file_name(dataset: str, split: str) -> str:
    """Name of the compressed file for ``split`` of ``dataset``, e.g. "shd_train.h5.gz".

    Raises ValueError, listing the valid names, for an unknown data set or split.
    """
    dataset = _check_dataset(dataset)
    return f"{dataset}_{_check_splits(dataset, [split])[0]}.h5.gz"


def _check_dataset(dataset) -> str:
    if not isinstance(dataset, str) or dataset.lower() not in SPLITS:
        raise ValueError(
            f"unknown data set {dataset!r}; expected one of {', '.join(SPLITS)}"
        )
    return dataset.lower()


def _check_splits(dataset: str, splits) -> list:
    valid = SPLITS[dataset]
    if splits is None:
        return list(valid)
    if isinstance(splits, str):
        splits = [splits]
    out = []
    for split in splits:
        if split not in valid:
            raise ValueError(
                f"unknown split {split!r} for {dataset}; expected one of {', '.join(valid)}"
            )
        if split not in out:
            out.append(split)
    return out


def _parse_checksums(text: str) -> dict:
    """``{file name: lower-case md5}`` from md5sum output; lines of another form are skipped."""
    sums = {}
    for line in text.splitlines():
        m = _MD5_LINE.match(line)
        if m is None:
            continue
        digest, name = m.group(1).lower(), m.group(2)
        if name.startswith("./"):
            name = name[2:]
        if sums.get(name, digest) != digest:
            raise DataError(f"the checksum list gives two different MD5 sums for {name}")
        sums[name] = digest
    return sums


def read_checksums(base_url: str | None = None, timeout: float = 30) -> dict:
    """Fetch ``<base>/md5sums.txt`` and return ``{file name: md5}``.

    ``base_url`` is resolved by :func:`resolve_base_url`.  Blank lines and
    lines not in md5sum form are skipped; the digests are lower case.  Raises
    :class:`DataError` when the list cannot be fetched, when it holds no valid
    line, or when it gives one name two different sums.
    """
    url = resolve_base_url(base_url) + CHECKSUM_FILE
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            raw = resp.read(_MAX_LIST_BYTES + 1)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise DataError(
            f"could not download the checksum list {url}: {exc}. Without network access, "
            f"place the decompressed .h5 files by hand in the data folder"
        ) from exc
    if len(raw) > _MAX_LIST_BYTES:
        raise DataError(f"{url} is larger than {_MAX_LIST_BYTES} bytes; not a checksum list")
    sums = _parse_checksums(raw.decode("utf-8", errors="replace"))
    if not sums:
        raise DataError(
            f"{url} holds no line of the form '<32 hex digits>  <file name>'; "
            f"it is not a checksum list"
        )
    return sums


def _gunzip(src: Path, dest: Path) -> None:
    """Decompress ``src`` into ``dest`` through a temporary file in ``dest``'s folder.

    ``dest`` appears only once the whole stream was decompressed; on any
    failure the temporary file is removed.  A corrupt or truncated gzip stream
    raises :class:`DataError`.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out, gzip.open(src, "rb") as gz:
                shutil.copyfileobj(gz, out, _CHUNK)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"could not decompress {src} to {dest}: {type(exc).__name__}: {exc}"
            ) from exc
        os.replace(tmp, dest)
    finally:
        discard(tmp)


def download(
    data_dir,
    dataset: str = "shd",
    splits=None,
    base_url: str | None = None,
    progress: bool = False,
    timeout: float = 30,
) -> dict:
    """Download and decompress ``splits`` of ``dataset`` into ``data_dir``.

    ``dataset`` is "shd" (splits "train", "test") or "ssc" (splits "train",
    "valid", "test"); ``splits`` is one split name, a sequence of them, or None
    for all.  Unknown names raise ValueError listing the valid ones.  Returns
    ``{split: Path of <data_dir>/<dataset>_<split>.h5}`` in the order asked.

    A split whose ``.h5`` file already exists is not downloaded again.  For
    the others the checksum list is read from the source (see
    :func:`resolve_base_url`) once, and every needed name is looked up in it
    before anything is downloaded: a name missing from the list raises
    :class:`DataError` naming it.  Each ``<dataset>_<split>.h5.gz`` is then
    fetched into ``data_dir`` and verified against the list's MD5; a
    ``.h5.gz`` already in ``data_dir`` whose MD5 matches is used without
    downloading.  The ``.h5.gz`` is decompressed to the ``.h5`` through a
    temporary file and deleted once the ``.h5`` is in place, to save space.

    Failures raise :class:`DataError` (network errors, a connection that ends
    early, a checksum mismatch, a corrupt gzip stream) and leave no partial
    file behind: no ``.h5`` appears, temporary files are removed, and a
    ``.h5.gz`` this call downloaded is deleted when it cannot be decompressed.
    Splits completed before the failure keep their ``.h5``.
    """
    dataset = _check_dataset(dataset)
    wanted = _check_splits(dataset, splits)
    data_dir = Path(data_dir).expanduser()
    out = {split: data_dir / f"{dataset}_{split}.h5" for split in wanted}
    todo = [split for split in wanted if not out[split].is_file()]
    if not todo:
        return out

    base = resolve_base_url(base_url)
    sums = read_checksums(base, timeout=timeout)
    names = {split: f"{dataset}_{split}.h5.gz" for split in todo}
    missing = [name for name in names.values() if name not in sums]
    if missing:
        raise DataError(
            f"{base}{CHECKSUM_FILE} has no MD5 sum for {', '.join(missing)}; "
            f"refusing to download unverified files"
        )

    data_dir.mkdir(parents=True, exist_ok=True)
    for split in todo:
        name = names[split]
        gz = data_dir / name
        md5 = sums[name]
        downloaded = False
        if not (gz.is_file() and file_digest(gz, "md5") == md5):
            fetch(base + name, gz, md5, timeout=timeout, progress=progress, algorithm="md5")
            downloaded = True
        try:
            _gunzip(gz, out[split])
        except DataError:
            if downloaded:
                gz.unlink(missing_ok=True)
            raise
        gz.unlink(missing_ok=True)
    return out
