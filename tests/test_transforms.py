import numpy as np
import pytest

from datapipe.transforms import AugParams, sample_matrix, warp


def coordinate_image(h, w):
    """R = 3x, G = 3y: bilinear interpolation of a linear ramp is exact, so values tell the source point."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([3 * xx, 3 * yy, np.zeros_like(xx)], axis=2).astype(np.uint8)


def source_points(m, out_hw):
    """Source coordinates of every view pixel: M⁻¹ (u, v, 1)."""
    h, w = out_hw
    vv, uu = np.mgrid[0:h, 0:w]
    pts = np.linalg.inv(m) @ np.stack([uu.ravel(), vv.ravel(), np.ones(h * w)])
    return pts[0].reshape(h, w), pts[1].reshape(h, w)


@pytest.mark.parametrize("seed", range(12))
def test_image_label_and_validity_land_where_the_matrix_says(seed):
    rng = np.random.default_rng(seed)
    src_h, src_w = 60, 80
    image = coordinate_image(src_h, src_w)
    label = (np.arange(src_h * src_w).reshape(src_h, src_w) % 7).astype(np.uint8)
    params = AugParams(crop_size=(48, 56), scale_range=(0.6, 1.6), rot_mag=20, hflip=True, vflip=True)
    m, out_hw, _ = sample_matrix(params, (src_h, src_w), rng)
    view, view_label, valid = warp(image, m, out_hw, label, fill=(9, 9, 9))
    assert view.shape == (48, 56, 3) and view_label.shape == (48, 56) and valid.shape == (48, 56)
    xs, ys = source_points(m, out_hw)
    # image: interior pixels (whole bilinear support inside the source) carry their source coordinates
    interior = (xs >= 0) & (xs <= src_w - 1) & (ys >= 0) & (ys <= src_h - 1)
    assert np.abs(view[..., 0][interior] - 3 * xs[interior]).max() <= 1.0
    assert np.abs(view[..., 1][interior] - 3 * ys[interior]).max() <= 1.0
    # label: nearest source pixel; validity: 1 exactly where that pixel exists
    xi, yi = np.floor(xs + 0.5).astype(int), np.floor(ys + 0.5).astype(int)
    inside = (xi >= 0) & (xi < src_w) & (yi >= 0) & (yi < src_h)
    safe = inside & (np.abs(xs + 0.5 - np.round(xs + 0.5)) > 1e-3) & (np.abs(ys + 0.5 - np.round(ys + 0.5)) > 1e-3)
    np.testing.assert_array_equal(view_label[safe], label[yi[safe], xi[safe]])
    np.testing.assert_array_equal(valid[safe], 1)
    outside = ~inside & (np.abs(xs + 0.5 - np.round(xs + 0.5)) > 1e-3) & (np.abs(ys + 0.5 - np.round(ys + 0.5)) > 1e-3)
    np.testing.assert_array_equal(valid[outside], 0)
    np.testing.assert_array_equal(view_label[outside], 255)


def test_identity_crop_and_flip_by_hand():
    image = coordinate_image(10, 10)
    params = AugParams(crop_size=(10, 10), hflip=True)
    for seed in range(10):
        m, hw, _ = sample_matrix(params, (10, 10), np.random.default_rng(seed))
        view, _, valid = warp(image, m, hw)
        flipped = m[0, 0] < 0
        np.testing.assert_array_equal(view, image[:, ::-1] if flipped else image)
        assert valid.all()


def test_small_image_is_padded_with_fill_and_invalid():
    image = np.full((20, 20, 3), 200, np.uint8)
    params = AugParams(crop_size=(32, 32))
    m, hw, _ = sample_matrix(params, (20, 20), np.random.default_rng(0))
    view, label, valid = warp(image, m, hw, np.zeros((20, 20), np.uint8), fill=(1, 2, 3))
    assert valid.sum() == 400 and (label == 255).sum() == 32 * 32 - 400
    assert (view[valid == 0] == (1, 2, 3)).all() and (view[valid == 1] == 200).all()


def test_a_small_image_lands_at_random_or_in_the_centre():
    """Smaller than the crop in height only: a random position by default; centred with centre_small (the
    authors' padding), while the wider side is still cropped at random."""
    def image_offsets(params, seed):
        m, _, _ = sample_matrix(params, (20, 50), np.random.default_rng(seed))
        return -m[1, 2], -m[0, 2]  # the crop's top-left corner in the image: y0, x0

    drawn = [image_offsets(AugParams(crop_size=(32, 32)), seed) for seed in range(20)]
    centred = [image_offsets(AugParams(crop_size=(32, 32), centre_small=True), seed) for seed in range(20)]
    assert len({y for y, _ in drawn}) > 5 and all(-12 <= y <= 0 for y, _ in drawn)
    assert {y for y, _ in centred} == {-6.0}  # (20 − 32) / 2: 6 rows of padding above, 6 below
    assert [x for _, x in centred] == [x for _, x in drawn] and len({x for _, x in drawn}) > 5


def test_reflected_border_mirrors_the_image_but_stays_invalid():
    """reflect_border: outside the source the view holds the image mirrored at its border (OpenCV's
    BORDER_REFLECT_101: edge pixel not repeated), still marked invalid and labelled ignore."""
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    m = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # the image 2 px to the right
    view, label, valid = warp(image, m, (4, 8), np.zeros((4, 6), np.uint8), fill=(9, 9, 9), reflect=True)
    np.testing.assert_array_equal(view[:, 2:], image)
    np.testing.assert_array_equal(view[:, 1], image[:, 1])  # column −1 mirrors column 1
    np.testing.assert_array_equal(view[:, 0], image[:, 2])  # column −2 mirrors column 2
    assert (valid[:, :2] == 0).all() and (valid[:, 2:] == 1).all() and (label[:, :2] == 255).all()
    plain, _, _ = warp(image, m, (4, 8), fill=(9, 9, 9))
    assert (plain[:, :2] == 9).all()


def test_hung_scale_steps():
    params = AugParams(scale_range=(0.5, 1.5), scale_step=0.1)
    draws = {round(params.draw_scale(np.random.default_rng(s)), 6) for s in range(300)}
    assert draws == {round(0.5 + 0.1 * k, 6) for k in range(11)}


def test_max_scale_draws_are_log_uniform_as_the_authors():
    """--aug-max-scale s: log(scale) ~ U(−log s, log s), so s and 1/s are equally likely (uniform scale
    would put 55 % of the draws above 1 for s = 2)."""
    rng = np.random.default_rng(0)
    log_uniform = AugParams(scale_range=(0.5, 2.0), scale_log_uniform=True)
    logs = np.log([log_uniform.draw_scale(rng) for _ in range(4000)])
    assert logs.min() >= np.log(0.5) and logs.max() <= np.log(2.0)
    assert abs(np.mean(logs > 0) - 0.5) < 0.03 and abs(np.mean(logs)) < 0.03
    uniform = AugParams(scale_range=(0.5, 2.0))
    assert np.mean([uniform.draw_scale(rng) > 1 for _ in range(4000)]) > 0.6
