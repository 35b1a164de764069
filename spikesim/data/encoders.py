"""Input encoders turning MNIST images into input sequences (pure NumPy, vectorised).

All encoders accept images as ``(N, 784)`` or ``(N, 28, 28)`` (any ``(N, ...)``
whose trailing size is the pixel count), with raw pixel values in 0..255
(integer or float). Outputs are ``dtype`` (default ``float32``; pass the network's dtype, so
that a float64 network gets float64 inputs) with the batch first, ``(N, T, F)``; pass
``time_major=True`` to :func:`sliding_window` to get ``(T, N, F)`` directly.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "sliding_window",
    "rbf_encode",
    "rbf_centres",
    "permutation",
    "apply_permutation",
    "invert_permutation",
    "RBF_FLUSH",
]

#: RBF activations below this are set to exactly 0 (avoids denormals in GEMMs).
RBF_FLUSH = 1e-6


def _flatten(images) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim < 2:
        raise ValueError(f"images must be (N, pixels) or (N, H, W), got shape {arr.shape}")
    return arr.reshape(arr.shape[0], -1)


def sliding_window(
    images,
    k: int,
    stride: int = 1,
    scale: str = "analog",
    threshold: float = 0.1,
    time_major: bool = False,
    dtype=np.float32,
) -> np.ndarray:
    """Read each flattened image through a window of ``k`` pixels moving by ``stride``.

    With ``D`` pixels (784) there are ``T = D // stride`` steps; step ``t`` sees
    ``pix[s_t : s_t + k]`` with ``s_t = min(t * stride, D - k)``, i.e. windows that
    would run past the end are clamped to the last ``k`` pixels (so for stride 1
    the final ``k - 1`` steps repeat ``pix[D-k:D]``).

    ``scale="analog"`` gives ``pix / 255``; ``scale="binary"`` gives
    ``1.0 where pix / 255 > threshold else 0.0`` (strictly greater).
    Returns ``dtype (N, T, k)``, or ``(T, N, k)`` (C-contiguous) if ``time_major``.
    """
    flat = _flatten(images)
    d = flat.shape[1]
    k, stride = int(k), int(stride)
    if not 1 <= k <= d:
        raise ValueError(f"window size k must be in 1..{d}, got {k}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if scale == "binary":
        x = (flat.astype(np.float64) / 255.0 > float(threshold)).astype(dtype)
    elif scale == "analog":
        x = (flat.astype(np.float64) / 255.0).astype(dtype)
    else:
        raise ValueError(f"scale must be 'analog' or 'binary', got {scale!r}")
    n_steps = d // stride
    starts = np.minimum(np.arange(n_steps) * stride, d - k)
    idx = starts[:, None] + np.arange(k)[None, :]  # (T, k)
    if time_major:
        return np.ascontiguousarray(x.T[idx].transpose(0, 2, 1))  # (T, N, k)
    return x[:, idx]  # (N, T, k)


def rbf_centres(n_fields: int = 80) -> np.ndarray:
    """Centres ``c_i = (i - 1) / (n_fields - 2)``, i = 0..n_fields-1 (so -1/78 .. 1 for 80)."""
    if n_fields < 3:
        raise ValueError(f"n_fields must be >= 3, got {n_fields}")
    return (np.arange(n_fields, dtype=np.float64) - 1.0) / (n_fields - 2)


def _rbf(x: np.ndarray, n_fields: int) -> np.ndarray:
    """Unnormalised Gaussian fields of values ``x`` (already in 0..1), float64 math."""
    # (x - c_i) / sigma with sigma = 1/(n_fields-2) equals x*(n_fields-2) - (i-1)
    z = x[..., None] * (n_fields - 2) - (np.arange(n_fields, dtype=np.float64) - 1.0)
    out = np.exp(-0.5 * z * z)
    out[out < RBF_FLUSH] = 0.0
    return out


def rbf_encode(images, n_fields: int = 80, dtype=np.float32) -> np.ndarray:
    """Encode every pixel by ``n_fields`` Gaussian receptive fields.

    For ``p = pix / 255`` field ``i`` gives ``exp(-(p - c_i)^2 / (2 sigma^2))``
    with centres from :func:`rbf_centres` and ``sigma = 1 / (n_fields - 2)``
    (1/78 for 80 fields). The Gaussian is *not* normalised: the peak value is 1
    (pixel 0 gives exactly 1.0 at field 1, pixel 255 exactly 1.0 at field 79).
    Values below ``RBF_FLUSH`` (1e-6) are flushed to exactly 0. Integer pixels
    use a 256-entry lookup table. Returns ``dtype (N, D, n_fields)``.
    """
    flat = _flatten(images)
    n_fields = int(n_fields)
    rbf_centres(n_fields)  # validates n_fields
    if flat.dtype.kind in "ui" and (flat.size == 0 or (flat.min() >= 0 and flat.max() <= 255)):
        table = _rbf(np.arange(256, dtype=np.float64) / 255.0, n_fields).astype(dtype)
        return table[flat.astype(np.intp)]
    return _rbf(flat.astype(np.float64) / 255.0, n_fields).astype(dtype)


def permutation(seed: int, n: int = 784) -> np.ndarray:
    """Fixed pixel permutation ``np.random.default_rng(seed).permutation(n)`` as int64."""
    return np.random.default_rng(seed).permutation(int(n)).astype(np.int64)


def _check_perm(perm) -> np.ndarray:
    perm = np.asarray(perm)
    if perm.ndim != 1 or perm.dtype.kind not in "iu":
        raise ValueError(f"perm must be a 1-D integer array, got {perm.dtype} {perm.shape}")
    if not np.array_equal(np.sort(perm), np.arange(perm.size)):
        raise ValueError("perm is not a permutation of 0..n-1")
    return perm.astype(np.int64)


def apply_permutation(images_flat, perm) -> np.ndarray:
    """Reorder pixels: ``out[..., j] = images[..., perm[j]]``.

    Images may be ``(N, D)`` or ``(N, H, W)`` (flattened first); returns ``(N, D)``.
    """
    perm = _check_perm(perm)
    arr = np.asarray(images_flat)
    if arr.ndim >= 2 and arr.shape[-1] != perm.size:
        arr = _flatten(arr)
    if arr.shape[-1] != perm.size:
        raise ValueError(f"permutation of length {perm.size} does not fit pixels {arr.shape}")
    return arr[..., perm]


def invert_permutation(perm) -> np.ndarray:
    """The inverse permutation:
    ``apply_permutation(apply_permutation(x, p), invert_permutation(p)) == x``."""
    perm = _check_perm(perm)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size, dtype=np.int64)
    return inv
