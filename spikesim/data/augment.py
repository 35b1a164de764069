"""Training-time augmentation of images (pure NumPy).

:func:`random_shift` translates each image by a random whole number of pixels, filling the
uncovered border with zeros. On sequential MNIST a shift of one or two pixels moves a digit's
strokes to other time steps (and, permuted, to other places in the sequence) without changing
its class: more distinct training sequences from the same images. Augmentation is applied to
training batches only, before any pixel permutation, so that a permuted task sees shifted
images permuted, as it sees its test images.
"""
from __future__ import annotations

import numpy as np

__all__ = ["random_shift", "shift_images"]


def _as_square(images) -> tuple[np.ndarray, int]:
    arr = np.asarray(images)
    if arr.ndim == 2:
        side = int(round(np.sqrt(arr.shape[1])))
        if side * side != arr.shape[1]:
            raise ValueError(f"images of {arr.shape[1]} pixels are not square")
        return arr.reshape(len(arr), side, side), side
    if arr.ndim == 3 and arr.shape[1] == arr.shape[2]:
        return arr, arr.shape[1]
    raise ValueError(f"images must be (N, side*side) or (N, side, side), got shape {arr.shape}")


def shift_images(images, dy, dx) -> np.ndarray:
    """Image ``n`` moved down by ``dy[n]`` and right by ``dx[n]`` pixels (negative: up, left),
    zeros where nothing moved in; the same shape and dtype as ``images``."""
    sq, side = _as_square(images)
    dy, dx = (np.broadcast_to(np.asarray(d, dtype=np.int64), (len(sq),)) for d in (dy, dx))
    if len(sq) and max(np.abs(dy).max(), np.abs(dx).max()) >= side:
        raise ValueError(f"shifts must be smaller than the image side {side}")
    out = np.zeros_like(sq)
    # each distinct (dy, dx) pair is one slice copy for all images that drew it
    for a, b in set(zip(dy.tolist(), dx.tolist())):
        sel = (dy == a) & (dx == b)
        out[sel, max(a, 0):side + min(a, 0), max(b, 0):side + min(b, 0)] = \
            sq[sel, max(-a, 0):side + min(-a, 0), max(-b, 0):side + min(-b, 0)]
    return out.reshape(np.shape(images))


def random_shift(images, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by (dy, dx) drawn uniformly from {-max_shift, ..., max_shift}^2 with
    ``rng`` (draws in image order: the same generator state gives the same shifts);
    ``max_shift`` 0 returns the images unchanged."""
    if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) \
            or max_shift < 0:
        raise ValueError(f"max_shift must be an integer >= 0, got {max_shift!r}")
    if max_shift == 0:
        return np.asarray(images)
    sq, side = _as_square(images)
    if max_shift >= side:
        raise ValueError(f"max_shift must be smaller than the image side {side}, got {max_shift}")
    d = rng.integers(-max_shift, max_shift + 1, size=(2, len(sq)))
    return shift_images(images, d[0], d[1])
