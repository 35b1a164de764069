"""Small, dependency-free helpers to fetch data files and check their integrity.

These are generic: any data set module can call :func:`fetch` with a URL, a
destination and the expected SHA-256 digest.  Files are written to a temporary
file next to the destination, verified, and only then moved into place with
``os.replace`` so a half-downloaded or tampered file never ends up under the
final name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from spikesim.errors import DataError

__all__ = ["default_data_dir", "fetch", "sha256_file"]

#: Environment variable that overrides the default data folder.
DATA_ENV_VAR = "SPIKESIM_DATA"

_CHUNK = 1 << 16


def default_data_dir() -> Path:
    """Folder where spikesim looks for (and downloads) data sets.

    ``$SPIKESIM_DATA`` when that variable is set and non-empty, otherwise
    ``~/.cache/spikesim``.  The folder is not created here.
    """
    env = os.environ.get(DATA_ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "spikesim"


def sha256_file(path) -> str:
    """Hex SHA-256 digest of the file at ``path``, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _progress(total, desc):
    """A tqdm bar when tqdm is importable, else None."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False)


def fetch(url: str, dest, sha256: str, timeout: float = 30, progress: bool = False) -> Path:
    """Download ``url`` to ``dest`` and check that its SHA-256 equals ``sha256``.

    The data goes to a temporary file in ``dest``'s folder first; it replaces
    ``dest`` atomically only after the checksum matched.  On a mismatch the
    temporary file is removed and :class:`DataError` names the URL and both
    digests.  Network or HTTP failures also raise :class:`DataError`, telling
    the user where to put the file by hand.  Returns ``dest`` as a Path.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = sha256.strip().lower()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                total = resp.headers.get("Content-Length")
                bar = (_progress(int(total) if total and total.isdigit() else None, dest.name)
                       if progress else None)
                try:
                    for block in iter(lambda: resp.read(_CHUNK), b""):
                        out.write(block)
                        h.update(block)
                        if bar is not None:
                            bar.update(len(block))
                finally:
                    if bar is not None:
                        bar.close()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DataError(
                f"could not download {url}: {exc}. Without network access, obtain the file "
                f"by other means and place it by hand at {dest}"
            ) from exc
        got = h.hexdigest()
        if got != expected:
            raise DataError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {got}; "
                f"the download was discarded and nothing was written to {dest}"
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:  # pragma: no cover
                pass
    return dest
