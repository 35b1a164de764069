"""One line on stderr when a process first compiles a spikesim kernel, so that a first run
that spends its first minute in the compiler does not look hung.

Numba compiles a kernel on its first call for each new set of argument types and keeps the
result in its cache folder (``spikesim.kernel_cache_dir()``); a later process loads it from
there without compiling, and then this says nothing. The notice listens to Numba's
``numba:compile`` event, which fires only on a cache miss.
"""
from __future__ import annotations

import sys

from numba.core import event

_state = {"registered": False, "said": False}
MESSAGE = ("spikesim: compiling kernels for this CPU and these array types; this happens "
           "once (under a minute on 2 cores), later runs load them from {where}")


class _Notice(event.Listener):
    def on_start(self, ev):
        if _state["said"]:
            return
        fn = getattr(ev.data.get("dispatcher"), "py_func", None)
        if getattr(fn, "__module__", "").startswith("spikesim."):
            _state["said"] = True
            from .. import kernel_cache_dir
            print(MESSAGE.format(where=kernel_cache_dir()), file=sys.stderr, flush=True)

    def on_end(self, ev):
        pass


def register() -> None:
    """Listen for compilations (once per process)."""
    if not _state["registered"]:
        event.register("numba:compile", _Notice())
        _state["registered"] = True
