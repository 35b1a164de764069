"""The non-zero lists the kernels read their inputs from: built by ``lists.input_lists`` with
16-lane vector compares (``simd.lanes16``) plus a loop for the remainder, so rows of 70
values exercise both, at every kind of position."""
import numpy as np
import pytest

from spikesim.backends.cpu.lists import input_lists


def build(X):
    B, T, N = X.shape
    p0, p1 = np.empty(T * B, np.int64), np.empty(T * B, np.int64)
    col, val = np.empty(T * B * N, np.int32), np.empty(T * B * N, X.dtype)
    bad = np.zeros(1, np.int64)
    input_lists(0, 0, B, X, p0, p1, col, val, bad)
    return p0, p1, col, val, bad[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lists_hold_exactly_the_nonzeros(dtype):
    rng = np.random.default_rng(1)
    X = np.where(rng.random((3, 5, 70)) < 0.2, rng.normal(size=(3, 5, 70)), 0).astype(dtype)
    X[0, 0] = 1.0                         # a full row
    X[1, 1] = -0.0                        # negative zeros are zeros
    X[2, 3, [0, 15, 16, 63, 64, 69]] = [1, 2, 3, 4, 5, 6]
    p0, p1, col, val, bad = build(X)
    assert bad == 0
    B, T, N = X.shape
    for t in range(T):
        for b in range(B):
            r = t * B + b
            want = np.flatnonzero(X[b, t])
            np.testing.assert_array_equal(col[p0[r]:p1[r]], want)
            np.testing.assert_array_equal(val[p0[r]:p1[r]], X[b, t, want])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pos", [0, 15, 16, 47, 63, 64, 69])
@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_found_at_every_position(dtype, pos, bad_value):
    X = np.zeros((2, 3, 70), dtype)
    X[1, 2, pos] = bad_value
    assert build(X)[4] > 0
    X[1, 2, pos] = 1e30 if dtype == np.float64 else 3e38     # large but finite
    assert build(X)[4] == 0
