"""Tests for spikesim.data.encoders on small hand-made images."""
import numpy as np
import pytest

from spikesim.data import encoders as E


def ramp_images(n=2):
    """Pixel j of image i = (j + 7*i) % 256, as uint8 (N, 28, 28)."""
    j = np.arange(784)
    return np.stack([((j + 7 * i) % 256) for i in range(n)]).astype(np.uint8).reshape(n, 28, 28)


# ------------------------------------------------------------------ sliding window
def test_window_shape_and_values_stride1():
    imgs = ramp_images(3)
    k = 5
    out = E.sliding_window(imgs, k)
    assert out.shape == (3, 784, k) and out.dtype == np.float32
    pix = imgs.reshape(3, -1).astype(np.float64) / 255
    for t in (0, 1, 100, 779):  # regular windows
        np.testing.assert_allclose(out[:, t], pix[:, t:t + k], rtol=1e-6)
    # windows running past the end are clamped to the last k pixels
    for t in range(780, 784):
        np.testing.assert_array_equal(out[:, t], out[:, 779])
        np.testing.assert_allclose(out[:, t], pix[:, 784 - k:], rtol=1e-6)


def test_window_flat_and_square_inputs_agree():
    imgs = ramp_images(2)
    np.testing.assert_array_equal(E.sliding_window(imgs, 3),
                                  E.sliding_window(imgs.reshape(2, -1), 3))


@pytest.mark.parametrize("stride", [2, 3, 4, 28])
def test_window_stride(stride):
    imgs = ramp_images(2)
    k = 10
    out = E.sliding_window(imgs, k, stride=stride)
    T = 784 // stride
    assert out.shape == (2, T, k)
    pix = imgs.reshape(2, -1).astype(np.float32) / np.float32(255)
    for t in range(T):
        s = min(t * stride, 784 - k)
        np.testing.assert_allclose(out[:, t], pix[:, s:s + k], rtol=1e-6)
    if (T - 1) * stride + k > 784:  # the last step runs past the end: clamped to the final k pixels
        np.testing.assert_allclose(out[:, -1], pix[:, -k:], rtol=1e-6)
    else:  # e.g. stride 28, k 10: last window starts at 756 and fits
        np.testing.assert_allclose(out[:, -1], pix[:, (T - 1) * stride:(T - 1) * stride + k],
                                   rtol=1e-6)


def test_window_k_equals_stride_tiles_image():
    imgs = ramp_images(1)
    out = E.sliding_window(imgs, 28, stride=28)
    assert out.shape == (1, 28, 28)
    np.testing.assert_allclose(out[0] * 255, imgs[0].astype(np.float32), atol=1e-4)


def test_window_binary_threshold():
    img = np.zeros((1, 784), dtype=np.uint8)
    img[0, :4] = [25, 26, 255, 0]  # 25/255 = 0.098 <= 0.1 < 26/255
    out = E.sliding_window(img, 4, scale="binary")
    np.testing.assert_array_equal(out[0, 0], [0, 1, 1, 0])
    assert set(np.unique(out).tolist()) <= {0.0, 1.0}
    out = E.sliding_window(img, 4, scale="binary", threshold=0.5)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 1, 0])
    out = E.sliding_window(img, 4, scale="binary", threshold=0.0)
    np.testing.assert_array_equal(out[0, 0], [1, 1, 1, 0])


def test_window_time_major():
    imgs = ramp_images(3)
    a = E.sliding_window(imgs, 6, stride=2)
    b = E.sliding_window(imgs, 6, stride=2, time_major=True)
    assert b.shape == (392, 3, 6) and b.flags.c_contiguous
    np.testing.assert_array_equal(b, a.transpose(1, 0, 2))


@pytest.mark.parametrize("kw", [dict(k=0), dict(k=785), dict(k=3, stride=0),
                                dict(k=3, scale="log")])
def test_window_bad_args(kw):
    with pytest.raises(ValueError):
        E.sliding_window(ramp_images(1), **kw)


# ------------------------------------------------------------------ RBF
def test_rbf_centres():
    c = E.rbf_centres(80)
    assert c.shape == (80,)
    assert c[0] == pytest.approx(-1 / 78) and c[1] == 0.0 and c[79] == pytest.approx(1.0)
    np.testing.assert_allclose(np.diff(c), 1 / 78)


def test_rbf_peak_values():
    img = np.zeros((1, 784), dtype=np.uint8)
    img[0, 1] = 255
    out = E.rbf_encode(img)
    assert out.shape == (1, 784, 80) and out.dtype == np.float32
    # pixel 0 -> p=0 at centre c_1: exactly 1.0 there, symmetric neighbours
    assert out[0, 0, 1] == 1.0
    assert out[0, 0].argmax() == 1
    assert out[0, 0, 0] == out[0, 0, 2] == pytest.approx(np.exp(-0.5), rel=1e-6)
    assert out[0, 0, 3] == pytest.approx(np.exp(-2.0), rel=1e-6)
    # pixel 255 -> p=1 at centre c_79
    assert out[0, 1, 79] == 1.0 and out[0, 1].argmax() == 79


def test_rbf_generic_value():
    p = 100
    out = E.rbf_encode(np.full((1, 784), p, dtype=np.uint8))
    c = (np.arange(80) - 1) / 78
    ref = np.exp(-((p / 255 - c) ** 2) / (2 * (1 / 78) ** 2))
    ref[ref < 1e-6] = 0
    np.testing.assert_allclose(out[0, 0], ref, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(out[0, 0], out[0, 500])


def test_rbf_halfway_between_centres():
    # p/255 = 0.5/78, halfway between c_1 = 0 and c_2 = 1/78: distance sigma/2 from both
    p = 255 * 0.5 / 78
    out = E.rbf_encode(np.full((1, 784), p, dtype=np.float64))
    expected = np.exp(-0.125)
    assert out[0, 0, 1] == pytest.approx(expected, rel=1e-6)
    assert out[0, 0, 2] == pytest.approx(expected, rel=1e-6)
    assert out[0, 0, 0] == pytest.approx(np.exp(-0.5 * 1.5 ** 2), rel=1e-6)
    assert np.sort(out[0, 0])[-2:].tolist() == pytest.approx([expected] * 2, rel=1e-6)


def test_rbf_integer_table_matches_float_path():
    imgs = ramp_images(2)
    a = E.rbf_encode(imgs)
    b = E.rbf_encode(imgs.astype(np.float64))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(a == 0, b == 0)


def test_rbf_flushes_denormals():
    imgs = ramp_images(2)
    out = E.rbf_encode(imgs)
    nz = out[out != 0]
    assert nz.min() >= 1e-6
    tiny = np.finfo(np.float32).tiny
    assert not np.any((out > 0) & (out < tiny))
    # with sigma = 1/78 a pixel only activates a handful of fields (|d| <= 5.26 sigma)
    assert (out[0, 0] > 0).sum() <= 11
    # a value just outside the flush limit: 5.3 sigma away -> exp(-14.045) < 1e-6 -> 0
    p = 255 * (5.3 / 78)
    assert E.rbf_encode(np.full((1, 1), p))[0, 0, 1] == 0.0


# ------------------------------------------------------------------ permutation
def test_permutation_deterministic_by_seed():
    a, b, c = E.permutation(3), E.permutation(3), E.permutation(4)
    assert a.dtype == np.int64 and a.shape == (784,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.sort(a), np.arange(784))
    np.testing.assert_array_equal(a, np.random.default_rng(3).permutation(784))
    assert E.permutation(0, n=10).shape == (10,)


def test_permutation_round_trip():
    imgs = ramp_images(3)
    flat = imgs.reshape(3, -1)
    perm = E.permutation(7)
    inv = E.invert_permutation(perm)
    shuffled = E.apply_permutation(flat, perm)
    assert shuffled.shape == flat.shape
    np.testing.assert_array_equal(shuffled[:, 5], flat[:, perm[5]])
    np.testing.assert_array_equal(E.apply_permutation(shuffled, inv), flat)
    np.testing.assert_array_equal(perm[inv], np.arange(784))
    np.testing.assert_array_equal(inv[perm], np.arange(784))
    # (N, 28, 28) input is flattened first
    np.testing.assert_array_equal(E.apply_permutation(imgs, perm), shuffled)


def test_permutation_rejects_non_permutation():
    with pytest.raises(ValueError):
        E.invert_permutation(np.array([0, 0, 2]))
    with pytest.raises(ValueError):
        E.apply_permutation(np.zeros((1, 4)), np.array([0, 1, 2]))
