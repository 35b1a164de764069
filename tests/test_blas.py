"""``spikesim.backends.cpu.blas.matmul``: the kernels' per-step product on flat arrays and offsets
equals np.dot bit for bit (the same BLAS call) and touches nothing outside its output rows."""
import numpy as np
import pytest
from numba import njit

from spikesim.backends.cpu.blas import matmul


@njit
def _call(a, oa, b, c, oc, m, k, n):
    matmul(a, oa, b, c, oc, m, k, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("m,k,n", [(32, 36, 36), (5, 6, 36), (3, 1, 7)])
def test_matmul_equals_np_dot(dtype, m, k, n):
    rng = np.random.default_rng(m * k + n)
    a = rng.standard_normal(7 + m * k).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.full(3 + m * n + 5, 9.0, dtype)
    _call(a, 7, b.reshape(-1), c, 3, m, k, n)
    assert np.array_equal(c[3:3 + m * n].reshape(m, n), np.dot(a[7:].reshape(m, k), b))
    assert (c[:3] == 9).all() and (c[3 + m * n:] == 9).all()
