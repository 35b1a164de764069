"""spikesim: adaptive spiking recurrent networks with hand-written BPTT in Numba.

Importing spikesim points Numba's cache of compiled kernels at a user cache folder (not the
source tree), unless ``NUMBA_CACHE_DIR`` is set already: ``$SPIKESIM_CACHE_DIR``, else
``$XDG_CACHE_HOME/spikesim/numba``, else ``~/.cache/spikesim/numba``. The kernels are compiled
once per CPU, Numba version and argument types, and loaded from there afterwards.
"""
import os
import sys
from pathlib import Path

__version__ = "0.1.0"


def kernel_cache_dir() -> Path:
    """The folder that holds the compiled kernels (see the module's docstring)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    if os.environ.get("SPIKESIM_CACHE_DIR"):
        return Path(os.environ["SPIKESIM_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "spikesim" / "numba"


def _use_kernel_cache_dir():
    # Numba picks a function's cache folder when the function is decorated, from its config,
    # which it reads from the environment (and rereads when a NUMBA_ variable changes): set
    # both, before any kernel module is imported.
    path = str(kernel_cache_dir())
    os.environ["NUMBA_CACHE_DIR"] = path
    if "numba" in sys.modules:
        sys.modules["numba"].config.CACHE_DIR = path


_use_kernel_cache_dir()
