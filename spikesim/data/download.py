"""Small, dependency-free helpers to fetch data files and check their integrity.

These are generic: any data set module can call :func:`fetch` with a URL, a
destination and the expected digest (SHA-256 by default, MD5 on request for
data sets that publish only MD5 sums).  Files are written to a temporary file
next to the destination, verified, and only then moved into place with
``os.replace`` so a half-downloaded or tampered file never ends up under the
final name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from spikesim.errors import DataError

__all__ = ["ALGORITHMS", "default_data_dir", "discard", "fetch", "file_digest", "sha256_file"]

#: Environment variable that overrides the default data folder.
DATA_ENV_VAR = "SPIKESIM_DATA"

#: Digest algorithms :func:`fetch` and :func:`file_digest` accept.
ALGORITHMS = ("sha256", "md5")

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


def _hasher(algorithm: str):
    """A fresh hashlib object for ``algorithm`` (one of :data:`ALGORITHMS`)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(
            f"unknown digest algorithm {algorithm!r}; expected one of {', '.join(ALGORITHMS)}"
        )
    # The digests check integrity against a published list, not authenticity;
    # usedforsecurity=False keeps MD5 available on interpreters built in FIPS mode.
    return hashlib.new(algorithm, usedforsecurity=False)


def file_digest(path, algorithm: str = "sha256") -> str:
    """Hex digest of the file at ``path``, read in chunks; ``algorithm`` is "sha256" or "md5"."""
    h = _hasher(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path) -> str:
    """Hex SHA-256 digest of the file at ``path``, read in chunks."""
    return file_digest(path, "sha256")


def _progress(total, desc):
    """A tqdm bar when tqdm is importable, else None."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is optional
        return None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=False)


def discard(path: Path) -> None:
    """Remove the temporary file ``path`` if it is still there (after a failure, or when it
    was not moved into place); a file that cannot be removed is left."""
    try:
        path.unlink(missing_ok=True)
    except OSError:  # pragma: no cover
        pass


def fetch(
    url: str,
    dest,
    sha256: str,
    timeout: float = 30,
    progress: bool = False,
    *,
    algorithm: str = "sha256",
) -> Path:
    """Download ``url`` to ``dest`` and check that its digest equals ``sha256``.

    ``sha256`` is the expected hex digest (case and surrounding blanks do not
    matter) under ``algorithm``, which is "sha256" (the default) or "md5"; any
    other name raises ValueError before anything is fetched.

    The data goes to a temporary file in ``dest``'s folder first; it replaces
    ``dest`` atomically only after the checksum matched.  On a mismatch the
    temporary file is removed and :class:`DataError` names the URL, the
    algorithm and both digests.  Network or HTTP failures, and a connection
    that closes before the announced Content-Length arrived, also raise
    :class:`DataError`, telling the user where to put the file by hand.
    Returns ``dest`` as a Path.
    """
    h = _hasher(algorithm)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = sha256.strip().lower()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    total = None  # the announced Content-Length, when the server sent one
    received = 0
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                bar = _progress(total, dest.name) if progress else None
                try:
                    for block in iter(lambda: resp.read(_CHUNK), b""):
                        out.write(block)
                        h.update(block)
                        received += len(block)
                        if bar is not None:
                            bar.update(len(block))
                finally:
                    if bar is not None:
                        bar.close()
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            raise DataError(
                f"could not download {url}: {exc}. Without network access, obtain the file "
                f"by other means and place it by hand at {dest}"
            ) from exc
        if total is not None and received != total:
            raise DataError(
                f"could not download {url}: the connection ended after {received} of {total} "
                f"bytes. Try again, or obtain the file by other means and place it by hand "
                f"at {dest}"
            )
        got = h.hexdigest()
        if got != expected:
            raise DataError(
                f"checksum mismatch for {url}: expected {algorithm} {expected}, got {got}; "
                f"the download was discarded and nothing was written to {dest}"
            )
        os.replace(tmp, dest)
    finally:
        discard(tmp)
    return dest
