"""The explicit vectors of spikesim.backends.cpu.simd: masked loads and stores touch exactly their
lanes, the overloaded arithmetic equals NumPy's, and the scalar equations give the same results
on scalars and on 16-lane vectors (to the last bit or two: fast-math may contract the
multiply-adds differently)."""
import math

import numpy as np
import pytest
from numba import njit

from spikesim.backends.cpu.gather_scatter import _row_sums as cpu_row_sums
from spikesim.backends.cpu.simd import (
    LANES,
    at,
    compress16,
    compress16_bits,
    compress16_vcompress,
    is_aligned64,
    popcount,
    prefetch,
    store_fence,
    vbits_nonfinite,
    vbits_nonzero,
    vfma,
    vload,
    vstore,
    vstore16,
    vstore16_stream,
)
from spikesim.model.config import SurrogateConfig
from spikesim.model.neurons import alif_step, alif_step_backward
from spikesim.model.primitives import fexp, where_gt
from spikesim.model.surrogates import (
    sg_gaussian,
    sg_linear,
    sg_multi_gaussian,
    sg_slayer,
    surrogate_consts,
)


@njit
def _at_sum(a, o, n):
    tot = a[0] - a[0]
    for k in range(n):
        tot += at(a, o + k)
    return tot


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32, np.float64])
def test_at_reads_the_element_at_a_computed_index(dtype):
    a = (np.arange(50) * 3 - 7).astype(dtype)
    assert _at_sum(a, 11, 20) == a[11:31].sum()


@njit
def _copy_lanes(a, i, n, out, o):
    vstore(out, o, n, vload(a, i, n))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [-3, 0, 1, 5, 15, 16, 20])
def test_masked_load_and_store_touch_only_their_lanes(n, dtype):
    """(On every target: masked stores with AVX-512, plain or copied stores elsewhere; the CPU
    target tests run this file with the kernels compiled for AVX2 and generic x86-64.)"""
    a = np.arange(40, dtype=dtype)
    out = np.full(40, -1.0, dtype)
    _copy_lanes(a, 3, n, out, 20)
    k = min(max(n, 0), LANES)
    want = np.full(40, -1.0, dtype)
    want[20:20 + k] = a[3:3 + k]
    np.testing.assert_array_equal(out, want)
    # a load ending exactly at the end of the array, and a store there, stay in bounds
    tail = np.zeros(k, dtype)
    _copy_lanes(a, 40 - k, k, tail, 0)
    np.testing.assert_array_equal(tail, a[40 - k:])


@njit
def _load_all_lanes(a, i, n, out):
    vstore16(out, 0, vload(a, i, n))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [-3, 0, 1, 5, 15])
def test_partial_load_zeroes_the_lanes_past_n(n, dtype):
    """The lanes k >= n of a partial load are 0 whatever the array holds there (NaN here):
    in the middle of an array (where targets without a masked load instruction load all 16
    lanes and select the first n) and at its end (where the load stays masked)."""
    k = max(n, 0)
    a = np.full(40, np.nan, dtype)
    a[3:3 + k] = np.arange(1, k + 1)
    a[40 - k:] = np.arange(1, k + 1)
    want = np.zeros(LANES, dtype)
    want[:k] = np.arange(1, k + 1)
    for i in (3, 40 - k):
        out = np.full(LANES, -1.0, dtype)
        _load_all_lanes(a, i, n, out)
        np.testing.assert_array_equal(out, want, err_msg=f"load at {i}")


@njit
def _arith(a, b, s, out):
    x, y = vload(a, 0, LANES), vload(b, 0, LANES)
    vstore(out, 0, LANES, (x * y - s) + (-x) * s)
    vstore(out, LANES, LANES, max(x, s) + abs(y) - max(s, y))
    vstore(out, 2 * LANES, LANES, where_gt(x, s, y) + vfma(x, s, y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vector_arithmetic_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=LANES).astype(dtype), rng.normal(size=LANES).astype(dtype)
    s = dtype(0.3)
    out = np.zeros(3 * LANES, dtype)
    _arith(a, b, s, out)
    np.testing.assert_allclose(out[:LANES], (a * b - s) + (-a) * s, rtol=1e-6)
    np.testing.assert_allclose(out[LANES:2 * LANES], np.maximum(a, s) + abs(b) - np.maximum(s, b),
                               rtol=1e-6)
    np.testing.assert_allclose(out[2 * LANES:], np.where(a > s, b, 0) + a + s * b, rtol=1e-6)


SURROGATES = {"multi_gaussian": sg_multi_gaussian, "gaussian": sg_gaussian, "linear": sg_linear,
              "slayer": sg_slayer}


def _scalar_and_vector(f):
    @njit(fastmath=True)
    def scalar(x, sp, out):
        for q in range(x.shape[0]):
            out[q] = f(x[q], sp)

    @njit(fastmath=True)
    def vector(x, sp, out):
        for q in range(0, x.shape[0], LANES):
            w = min(LANES, x.shape[0] - q)
            vstore(out, q, w, f(vload(x, q, w), sp))
    return scalar, vector


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_surrogates_on_vectors_equal_the_scalar_code(name, dtype):
    x = np.linspace(-25, 25, 1001).astype(dtype)        # includes the exp cut-off at -20
    sp = surrogate_consts(SurrogateConfig(name), dtype)
    scalar, vector = _scalar_and_vector(SURROGATES[name])
    a, b = np.empty_like(x), np.empty_like(x)
    scalar(x, sp, a)
    vector(x, sp, b)
    # float64 vectors use LLVM's exp, the scalars math.exp
    np.testing.assert_allclose(a, b, rtol=4e-7 if dtype == np.float32 else 1e-14, atol=1e-30)


@njit(fastmath=True)
def _fexp_both(x, a, b):
    for q in range(x.shape[0]):
        a[q] = fexp(x[q])
    for q in range(0, x.shape[0], LANES):
        w = min(LANES, x.shape[0] - q)
        vstore(b, q, w, fexp(vload(x, q, w)))


def test_float32_exp_on_vectors_is_the_same_polynomial():
    x = np.linspace(-30, 0, 777).astype(np.float32)
    a, b = np.empty_like(x), np.empty_like(x)
    _fexp_both(x, a, b)
    np.testing.assert_allclose(a, b, rtol=4e-7, atol=1e-30)
    assert np.all(b[x < -20] == 0)
    np.testing.assert_allclose(b[x >= -20], np.exp(x[x >= -20].astype(np.float64)), rtol=1e-5)


@njit(fastmath=True)
def _steps(v, out_s, out_v, beta, b0, dt):
    n = v.shape[1]
    for q in range(n):
        r = alif_step_backward(v[0, q], v[1, q], v[2, q], v[3, q], v[4, q], v[5, q], v[6, q],
                               v[7, q], v[8, q], v[9, q], v[10, q], v[11, q], v[12, q],
                               v[13, q], v[14, q], beta, b0, dt)
        f = alif_step(v[0, q], v[1, q], v[2, q], v[3, q], v[4, q], v[5, q], v[6, q], v[7, q],
                      beta, b0, dt)
        for k in range(6):
            out_s[k, q] = r[k]
        for k in range(3):
            out_s[6 + k, q] = f[k]
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        l0, l1, l2, l3, l4 = (vload(v[0], q, w), vload(v[1], q, w), vload(v[2], q, w),
                              vload(v[3], q, w), vload(v[4], q, w))
        l5, l6, l7, l8, l9 = (vload(v[5], q, w), vload(v[6], q, w), vload(v[7], q, w),
                              vload(v[8], q, w), vload(v[9], q, w))
        l10, l11, l12, l13, l14 = (vload(v[10], q, w), vload(v[11], q, w), vload(v[12], q, w),
                                   vload(v[13], q, w), vload(v[14], q, w))
        r = alif_step_backward(l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14,
                               beta, b0, dt)
        f = alif_step(l0, l1, l2, l3, l4, l5, l6, l7, beta, b0, dt)
        vstore(out_v[0], q, w, r[0])
        vstore(out_v[1], q, w, r[1])
        vstore(out_v[2], q, w, r[2])
        vstore(out_v[3], q, w, r[3])
        vstore(out_v[4], q, w, r[4])
        vstore(out_v[5], q, w, r[5])
        vstore(out_v[6], q, w, f[0])
        vstore(out_v[7], q, w, f[1])
        vstore(out_v[8], q, w, f[2])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_neuron_equations_on_vectors_equal_the_scalar_code(dtype):
    rng = np.random.default_rng(3)
    v = rng.uniform(0.1, 0.9, size=(15, 37)).astype(dtype)      # 37: two full vectors + a tail
    a, b = np.empty((9, 37), dtype), np.empty((9, 37), dtype)
    _steps(v, a, b, dtype(1.8), dtype(0.01), dtype(1.0))
    # fast-math may contract the multiply-adds of the vector and the scalar loop differently,
    # differently again per target (AVX2 code: up to 1.2e-6 in float32 and 5e-15 in float64
    # after the 9 steps of the recurrence)
    np.testing.assert_allclose(a, b, rtol=2e-6 if dtype == np.float32 else 1e-14, atol=1e-30)
    assert math.isfinite(float(a.sum()))


def _compressor(store):
    @njit
    def run(dst, p, src, s, w, m):
        store(dst, p, src, s, w, m)
        return popcount(m)
    return run


_COMPRESSORS = {"vcompress": _compressor(compress16_vcompress),
                "bits": _compressor(compress16_bits), "chosen": _compressor(compress16)}


@pytest.mark.parametrize("kind", list(_COMPRESSORS))
@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.float64])
@pytest.mark.parametrize("w", [16, 9, 1])
def test_compress_stores_the_chosen_lanes_in_order_and_nothing_else(dtype, w, kind):
    """Both list builders (and the one this CPU uses) store exactly the chosen lanes."""
    rng = np.random.default_rng(w)
    src = (np.arange(40) * 3 + 1).astype(dtype)
    for _ in range(20):
        bits = rng.random(w) < 0.4
        bits[rng.integers(w)] = _ % 2 == 0       # and a few rows of exactly one or none
        m = np.uint64(sum(1 << k for k in range(w) if bits[k]))
        dst = np.full(30, -5, dtype)
        cnt = _COMPRESSORS[kind](dst, 7, src, 11, w, m)
        want = src[11:11 + w][bits]
        assert cnt == len(want)
        np.testing.assert_array_equal(dst[7:7 + cnt], want)
        assert (dst[:7] == -5).all() and (dst[7 + cnt:] == -5).all()


@njit
def _popcount(m):
    return popcount(m)


@njit
def _bits(a, i, w):
    v = vload(a, i, w)
    return vbits_nonzero(v), vbits_nonfinite(v)


def test_lane_bits_of_a_vector_value():
    a = np.zeros(20, np.float32)
    a[[0, 3, 7, 15, 16]] = [1, -2, np.nan, np.inf, 5]
    a[5] = -0.0
    nz, nf = _bits(a, 0, 16)
    assert nz == (1 << 0) | (1 << 3) | (1 << 7) | (1 << 15)       # NaN counts; -0.0 does not
    assert nf == (1 << 7) | (1 << 15)
    assert _bits(a, 0, 7) == ((1 << 0) | (1 << 3), 0)              # lanes >= w read as zero
    assert _popcount(np.uint64(2**64 - 1)) == 64 and _popcount(np.uint64(0)) == 0
    assert _popcount(np.uint64(0b1011 << 60)) == 3


@njit(fastmath=True)
def _row_sums(db, g, nb, N):
    cpu_row_sums(db, g, nb, N)


@pytest.mark.parametrize("N", [6, 36, 128])
def test_ordered_add_keeps_the_bias_gradients_sum_sequential(N):
    """``gather_scatter._row_sums`` (the bias gradient: a running sum of rows in registers,
    compiled with fastmath) must round as the sequential loop does. With a plain fast-math add,
    LLVM splits the sum into partial sums and this fails."""
    rng = np.random.default_rng(N)
    nb = 32
    g = (rng.standard_normal(nb * N) * 10.0 ** rng.integers(-3, 4, nb * N)).astype(np.float32)
    db = rng.standard_normal(N).astype(np.float32)
    want = db.copy()
    for b in range(nb):
        want = want + g[b * N:(b + 1) * N]
    _row_sums(db, g, nb, N)
    np.testing.assert_array_equal(db, want)


@njit
def _stream(a, i, src):
    ok = is_aligned64(a, i)
    if ok:
        vstore16_stream(a, i, vload(src, 0, 16))
    store_fence()
    return ok


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_store_writes_its_16_lanes_where_aligned(dtype):
    from spikesim.backends.cpu.workspace import empty_aligned
    a = empty_aligned(64, dtype)
    a[:] = -1
    src = np.arange(16, dtype=dtype)
    step = 64 // a.itemsize                     # elements per 64 bytes
    assert _stream(a, step, src)
    np.testing.assert_array_equal(a[step:step + 16], src)
    assert (a[:step] == -1).all() and (a[step + 16:] == -1).all()
    assert not _stream(a, 1, src) and (a[1:step] == -1).all()   # misaligned: refused


@njit
def _prefetch_sum(a):
    tot = a[0] - a[0]
    for i in range(a.shape[0]):
        prefetch(a, i + 64)             # past the end too: a hint never faults
        tot += a[i]
    return tot


def test_prefetch_is_only_a_hint():
    a = np.arange(100, dtype=np.float64)
    assert _prefetch_sum(a) == a.sum()
