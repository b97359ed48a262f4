import numpy as np
import pytest

from regularizers.masks import BoxMaskGenerator, parse_prop_range


def test_parse_prop_range():
    assert parse_prop_range("0.5") == (0.5, 0.5)
    assert parse_prop_range(0.25) == (0.25, 0.25)
    assert parse_prop_range("0:1") == (0.0, 1.0)
    for bad in ("1:0", "0.5:2", "a", "0:0.5:1"):
        with pytest.raises(ValueError):
            parse_prop_range(bad)


@pytest.mark.parametrize("fixed_aspect", [False, True])
def test_mean_area_is_p(fixed_aspect):
    gen = BoxMaskGenerator(0.5, random_aspect_ratio=not fixed_aspect)
    masks = gen.generate(2000, (64, 64), np.random.default_rng(0))
    assert masks.shape == (2000, 1, 64, 64) and masks.dtype == np.float32
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert abs(masks.mean() - 0.5) < 0.01
    # every single mask covers about half of the image (rounding of the sides only)
    assert np.all(np.abs(masks.mean(axis=(1, 2, 3)) - 0.5) < 0.05)


def test_range_gives_uniform_area():
    masks = BoxMaskGenerator("0:1").generate(4000, (50, 50), np.random.default_rng(1))
    areas = masks.mean(axis=(1, 2, 3))
    assert abs(areas.mean() - 0.5) < 0.02
    assert areas.min() < 0.05 and areas.max() > 0.95


def test_fixed_aspect_boxes_are_square():
    gen = BoxMaskGenerator(0.25, random_aspect_ratio=False)
    boxes = gen.rectangles(100, (80, 80), np.random.default_rng(0))
    assert np.all(boxes[..., 2] - boxes[..., 0] == 40) and np.all(boxes[..., 3] - boxes[..., 1] == 40)


def test_by_size_draws_sides():
    gen = BoxMaskGenerator(0.5, prop_by_area=False)
    boxes = gen.rectangles(10, (40, 60), np.random.default_rng(0))
    assert np.all(boxes[..., 2] - boxes[..., 0] == 20) and np.all(boxes[..., 3] - boxes[..., 1] == 30)


def test_boxes_stay_within_bounds_unless_asked():
    shape = (30, 40)
    inside = BoxMaskGenerator("0:1", n_boxes=3).rectangles(500, shape, np.random.default_rng(0))
    assert inside[..., :2].min() >= 0 and inside[..., 2].max() <= 30 and inside[..., 3].max() <= 40
    outside = BoxMaskGenerator("0.5:1", within_bounds=False).rectangles(500, shape, np.random.default_rng(0))
    assert outside[..., :2].min() < 0 or outside[..., 2].max() > 30 or outside[..., 3].max() > 40
    masks = BoxMaskGenerator("0.5:1", within_bounds=False).generate(500, shape, np.random.default_rng(0))
    assert masks.shape == (500, 1, 30, 40)


def test_boxes_combine_by_xor():
    gen = BoxMaskGenerator(0.3, n_boxes=2)
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    boxes = gen.rectangles(50, (32, 32), rng_a)
    masks = gen.generate(50, (32, 32), rng_b)
    for mask, ((y0, x0, y1, x1), (v0, u0, v1, u1)) in zip(masks, boxes, strict=True):
        expected = np.zeros((32, 32), bool)
        first = np.zeros_like(expected)
        first[y0:y1, x0:x1] = True
        second = np.zeros_like(expected)
        second[v0:v1, u0:u1] = True
        np.testing.assert_array_equal(mask[0].astype(bool), first ^ second)


def test_n_boxes_scale_sides():
    one = BoxMaskGenerator(0.5, random_aspect_ratio=False).box_sizes(1, np.random.default_rng(0))
    four = BoxMaskGenerator(0.5, n_boxes=4, random_aspect_ratio=False).box_sizes(1, np.random.default_rng(0))
    np.testing.assert_allclose(four, one.repeat(4, axis=1) / 2)


def test_invert_flips_the_mask():
    a = BoxMaskGenerator(0.3).generate(20, (16, 16), np.random.default_rng(3))
    b = BoxMaskGenerator(0.3, invert=False).generate(20, (16, 16), np.random.default_rng(3))
    np.testing.assert_array_equal(a, 1.0 - b)
    assert abs(a.mean() - 0.3) < 0.05  # the default: boxes are 1


def test_zero_area_gives_empty_mask():
    masks = BoxMaskGenerator(0.0).generate(5, (8, 8), np.random.default_rng(0))
    assert masks.sum() == 0 and not np.isnan(masks).any()


def test_deterministic_per_rng():
    gen = BoxMaskGenerator("0:1", n_boxes=3)
    a = gen.generate(8, (20, 20), np.random.default_rng(7))
    b = gen.generate(8, (20, 20), np.random.default_rng(7))
    c = gen.generate(8, (20, 20), np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
