"""Random shifts of training images: equal to a pixel-by-pixel reference, seeded, validated."""
import numpy as np
import pytest

from spikesim.data.augment import random_shift, shift_images


def reference_shift(image, dy, dx):
    """One square image moved down dy and right dx, pixel by pixel (the independent reference)."""
    side = image.shape[0]
    out = np.zeros_like(image)
    for r in range(side):
        for c in range(side):
            if 0 <= r - dy < side and 0 <= c - dx < side:
                out[r, c] = image[r - dy, c - dx]
    return out


def test_shift_images_equals_the_pixel_reference():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    dy, dx = rng.integers(-3, 4, (2, 40))
    for shape in ((40, 28, 28), (40, 784)):
        out = shift_images(img.reshape(shape), dy, dx)
        assert out.shape == shape and out.dtype == np.uint8
        for n in range(40):
            np.testing.assert_array_equal(out.reshape(40, 28, 28)[n],
                                          reference_shift(img[n], dy[n], dx[n]))
    # the comparison can fail: the reference with the directions swapped disagrees
    out = shift_images(img, dy, dx)
    assert any(not np.array_equal(out[n], reference_shift(img[n], dx[n], dy[n]))
               for n in range(40))


def test_random_shift_is_seeded_and_draws_every_offset():
    img = np.zeros((500, 28, 28), np.float32)
    img[:, 14, 14] = 1.0                    # one lit pixel: where it lands is the drawn shift
    a = random_shift(img, 2, np.random.default_rng(5))
    b = random_shift(img, 2, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, random_shift(img, 2, np.random.default_rng(6)))
    lit = np.nonzero(a.reshape(500, -1))[1]
    rows, cols = lit // 28 - 14, lit % 28 - 14
    assert set(rows.tolist()) == set(cols.tolist()) == {-2, -1, 0, 1, 2}
    assert len(rows) == 500                 # nothing fell off a 28-pixel image
    np.testing.assert_array_equal(random_shift(img, 0, np.random.default_rng(5)), img)


@pytest.mark.parametrize("bad", [-1, 1.5, True, 28, "2"])
def test_random_shift_refuses_bad_sizes(bad):
    with pytest.raises(ValueError, match="max_shift"):
        random_shift(np.zeros((2, 28, 28)), bad, np.random.default_rng(0))


def test_shift_images_refuses_bad_shapes_and_shifts():
    with pytest.raises(ValueError, match="not square"):
        shift_images(np.zeros((2, 30)), 0, 0)
    with pytest.raises(ValueError, match=r"\(N, side\*side\)"):
        shift_images(np.zeros(4), 0, 0)
    with pytest.raises(ValueError, match="smaller than"):
        shift_images(np.zeros((2, 4, 4)), [0, 4], 0)
