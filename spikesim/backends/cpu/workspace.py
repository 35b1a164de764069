"""Work arrays: 64-byte aligned, and reused from call to call when the caller keeps a dict of
them (fresh multi-MB arrays cost page faults on every training step)."""
from __future__ import annotations

import numpy as np


def empty_aligned(shape, dtype, align: int = 64) -> np.ndarray:
    """np.empty(shape, dtype) whose data start on a multiple of ``align`` bytes (the forward
    streams the membrane into such arrays with aligned non-temporal stores)."""
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    raw = np.empty(n * dtype.itemsize + align, np.uint8)
    k = -raw.ctypes.data % align
    return raw[k:k + n * dtype.itemsize].view(dtype).reshape(shape)


def work_array(work: dict | None, key: str, shape, dtype) -> np.ndarray:
    """The array ``work[key]``, reused while its shape and dtype fit, else a new aligned one
    (kept in ``work``); a fresh one each call when ``work`` is None."""
    shape = tuple(shape)
    if work is None:
        return empty_aligned(shape, dtype)
    a = work.get(key)
    if a is None or a.shape != shape or a.dtype != dtype:
        a = work[key] = empty_aligned(shape, dtype)
    return a
