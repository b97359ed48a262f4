"""Fast CPU tests of toy2d.py: data generation, distance map, constraint mask, losses, rendering and
short runs of the commands."""

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import toy2d


def half_plane(h: int = 20, w: int = 20, split: int = 10) -> np.ndarray:
    """Class 1 in columns >= split."""
    image = np.zeros((h, w), dtype=bool)
    image[:, split:] = True
    return image


def disk_image(size: int = 64, radius: float = 18.0) -> np.ndarray:
    c = np.arange(size) + 0.5
    x, y = np.meshgrid(c, c)
    return np.hypot(x - size / 2, y - size / 2) < radius


def write_png(path: Path, image: np.ndarray) -> str:
    Image.fromarray(image.astype(np.uint8) * 255).save(path)
    return str(path)


# -- data ------------------------------------------------------------------------------------------------


def test_signed_distance_sign_and_units():
    sd = toy2d.signed_distance_map(half_plane())
    # class 1 (columns >= 10): +distance to the nearest class-0 pixel centre; class 0: negative
    assert sd[5, 10] == 1 and sd[5, 13] == 4 and sd[5, 19] == 10
    assert sd[5, 9] == -1 and sd[5, 0] == -10
    assert (sd[:, :10] < 0).all() and (sd[:, 10:] > 0).all()

    image = np.zeros((16, 16), dtype=bool)
    image[2, 3] = True  # a single class-1 pixel
    sd = toy2d.signed_distance_map(image)
    assert sd[2, 3] == 1.0
    assert sd[6, 6] == pytest.approx(-5.0)  # a 3-4-5 triangle, in pixels
    assert sd[2, 10] == pytest.approx(-7.0)


def test_signed_distance_rejects_one_class():
    with pytest.raises(ValueError, match="both classes"):
        toy2d.signed_distance_map(np.ones((8, 8), dtype=bool))


def test_erosion_half_plane_by_hand():
    kept = toy2d.erode_classes(half_plane(), 3)
    # class 0 column c is 10 - c px from class 1: kept when > 3, i.e. c <= 6; class 1 column c is c - 9 px
    # from class 0: kept when c >= 13. The gap is columns 7..12: 2r = 6 columns.
    assert kept[:, :7].all() and kept[:, 13:].all()
    assert not kept[:, 7:13].any()
    assert toy2d.erode_classes(half_plane(), 0).all()


def test_erosion_removes_exactly_pixels_within_r_of_other_class():
    rng = np.random.default_rng(0)
    image = disk_image(24, 7.0)
    image[rng.integers(0, 24, 6), rng.integers(0, 24, 6)] ^= True  # a few irregular pixels
    radius = 2.5
    rows, cols = np.mgrid[0:24, 0:24]
    expected = np.zeros_like(image)
    for r in range(24):
        for c in range(24):
            other = image != image[r, c]
            nearest = np.hypot(rows[other] - r, cols[other] - c).min()
            expected[r, c] = nearest > radius
    np.testing.assert_array_equal(toy2d.erode_classes(image, radius), expected)


def test_erosion_against_the_authors_iterated_cross():
    """README: the authors' r-fold 3×3-cross erosion (scipy's binary_erosion, L1 distance) removes the same
    band as ours along a column and a narrower one along a diagonal (about 1/√2 of ours)."""
    from scipy.ndimage import binary_erosion

    rows, cols = np.mgrid[0:120, 0:120]
    inner = (slice(30, 90), slice(30, 90))  # away from the border, which only the authors' erosion eats
    for image, ratio in ((cols > 60, 1.0), (cols > rows, 2 ** -0.5)):
        authors = ~(binary_erosion(image, iterations=10) | binary_erosion(~image, iterations=10))[inner]
        ours = ~toy2d.erode_classes(image, 10)[inner]
        assert (authors & ~ours).sum() == 0  # the authors' band lies inside ours
        assert authors.sum() / ours.sum() == pytest.approx(ratio, abs=0.05)


def test_image_samples_labels_match_image():
    image = np.zeros((24, 40), dtype=bool)  # not square, not symmetric: rows and columns cannot swap
    image[:, 28:] = True
    image[4:14, 5:12] = True
    rng = np.random.default_rng(1)
    pos, labels = toy2d.image_samples(image, 2, 0.0, rng)
    kept = toy2d.erode_classes(image, 2)
    assert len(pos) == kept.sum()
    cols, rows = np.floor(pos).astype(int).T
    np.testing.assert_array_equal(pos % 1.0, 0.5)  # pixel centres without jitter
    assert kept[rows, cols].all()
    np.testing.assert_array_equal(labels, image[rows, cols])
    # with jitter, the same pixels, moved
    pos_j, labels_j = toy2d.image_samples(image, 2, 1.0, np.random.default_rng(1))
    np.testing.assert_array_equal(labels_j, labels)
    assert 0.9 < (pos_j - pos).std() < 1.1


def test_image_samples_rejects_erosion_that_empties_a_class():
    with pytest.raises(ValueError, match="no pixel of class 1"):
        toy2d.image_samples(disk_image(32, 5.0), 6, 0.0, np.random.default_rng(0))


def test_unit_coordinates_are_pixel_centres():
    units = toy2d.pixels_to_unit(np.array([[0.5, 0.5], [63.5, 31.5], [32.0, 16.0]]), (32, 64))
    np.testing.assert_allclose(units, [[-1 + 1 / 64, -1 + 1 / 32], [1 - 1 / 64, 1 - 1 / 32], [0.0, 0.0]])


def test_choose_labelled_counts():
    labels = np.array([0] * 30 + [1] * 10)
    rng = np.random.default_rng(0)
    idx = toy2d.choose_labelled(labels, 8, False, rng)  # proportional: 6 and 2
    assert len(set(idx.tolist())) == 8 and np.bincount(labels[idx]).tolist() == [6, 2]
    idx = toy2d.choose_labelled(labels, 8, True, rng)  # balanced: 4 and 4
    assert np.bincount(labels[idx]).tolist() == [4, 4]
    idx = toy2d.choose_labelled(labels, 7, True, rng)
    assert np.bincount(labels[idx]).tolist() == [4, 3]
    with pytest.raises(ValueError):
        toy2d.choose_labelled(labels, 41, False, rng)


def test_labelled_points_from_the_gap_data(tmp_path):
    """--sup-erode-radius: the labelled points are exactly those a run on the eroded data labels, and the
    samples are those of the un-eroded data; without it (or with the same radius) nothing changes."""
    img = disk_image(64, 18.0)
    name = "img:" + write_png(tmp_path / "disk.png", img)
    args = dict(noise_std=0.0, n_sup=6, balance=True)
    gap = toy2d.build_dataset(name, 6.0, rng=np.random.default_rng(3), **args)
    shared = toy2d.build_dataset(name, 0.0, rng=np.random.default_rng(3), sup_erode_radius=6.0, **args)
    own = toy2d.build_dataset(name, 0.0, rng=np.random.default_rng(3), **args)
    same = toy2d.build_dataset(name, 0.0, rng=np.random.default_rng(3), sup_erode_radius=0.0, **args)
    assert np.array_equal(shared.sup_pos, gap.sup_pos) and np.array_equal(shared.sup_labels, gap.sup_labels)
    assert shared.pos.shape[0] == img.size and gap.pos.shape[0] < img.size  # every pixel vs the eroded ones
    assert np.array_equal(same.sup_pos, own.sup_pos) and np.array_equal(same.pos, own.pos)
    assert not np.array_equal(own.sup_pos, shared.sup_pos)
    # the labelled points lie at least 6 px inside their class (noise 0)
    dist = toy2d.signed_distance_map(img)
    cols, rows = np.floor(shared.sup_pos).astype(int).T
    assert (np.abs(dist[rows, cols]) > 6.0).all() and np.array_equal(img[rows, cols], shared.sup_labels == 1)
    with pytest.raises(ValueError, match="--sup-erode-radius 40 leaves no pixel of class"):
        toy2d.build_dataset(name, 0.0, rng=np.random.default_rng(0), sup_erode_radius=40.0, **args)


def test_spiral_samples_follow_the_spiral_image():
    image = toy2d.make_spiral_image(256)
    pos, labels = toy2d.spiral_samples(256, 500, 1.0, np.random.default_rng(0))
    assert np.bincount(labels).tolist() == [500, 500]
    cols, rows = np.clip(pos.astype(int), 0, 255).T
    assert (image[rows, cols] == labels).mean() > 0.97
    assert 0.3 < image.mean() < 0.7


def test_default_boundary_is_reproducible_and_shipped():
    shipped = toy2d.load_boundary_image(toy2d.DEFAULT_BOUNDARY_PATH)
    assert shipped.shape == (512, 512)
    np.testing.assert_array_equal(shipped, toy2d.make_default_boundary())
    assert 0.1 < shipped.mean() < 0.5
    # each class is one connected region, also after the paper's 35 px erosion
    kept = toy2d.erode_classes(shipped, 35)
    for region in (shipped, ~shipped, kept & shipped, kept & ~shipped):
        assert cv2.connectedComponents(region.astype(np.uint8), connectivity=4)[0] == 2


def test_curve_is_reproducible_shipped_and_open():
    shipped = toy2d.load_boundary_image(toy2d.DEFAULT_CURVE_PATH)
    assert shipped.shape == (512, 512)
    np.testing.assert_array_equal(shipped, toy2d.make_curve_boundary())
    assert abs(shipped.mean() - 0.25) < 1 / 512  # the share is set by bisection
    # class 1 lies below a curve that crosses the image: in every column a run of class 0 above class 1
    first_class1 = shipped.argmax(axis=0)
    assert (shipped.any(axis=0)).all() and (~shipped[0]).all()
    rows = np.arange(512)[:, None]
    np.testing.assert_array_equal(shipped, rows >= first_class1[None, :])
    assert 0.55 * 512 < first_class1.min() and first_class1.max() < 0.9 * 512
    # both classes reach the left and right borders, and each stays one region after the 35 px erosion
    for column in (shipped[:, 0], shipped[:, -1]):
        assert column.any() and not column.all()
    kept = toy2d.erode_classes(shipped, 35)
    for region in (shipped, ~shipped, kept & shipped, kept & ~shipped):
        assert cv2.connectedComponents(region.astype(np.uint8), connectivity=4)[0] == 2
    # another share moves the curve, another seed changes it
    assert abs(toy2d.make_curve_boundary(share=0.4).mean() - 0.4) < 1 / 512
    assert (toy2d.make_curve_boundary(seed=8) != shipped).any()


def test_boundary_is_the_default_dataset_and_curve_is_reachable():
    assert toy2d.ToyConfig().dataset == "boundary"
    rng = np.random.default_rng(0)
    curve = toy2d.build_dataset("curve", 35.0, 2.0, 10, False, rng)
    blob = toy2d.build_dataset("boundary", 35.0, 2.0, 10, False, np.random.default_rng(0))
    np.testing.assert_array_equal(curve.image, toy2d.make_curve_boundary())
    np.testing.assert_array_equal(blob.image, toy2d.make_default_boundary())
    assert curve.sup_labels.sum() == 2  # 20 % of the gap data is class 1: 2 of 10 labelled points


def test_make_boundary_command_writes_each_kind(tmp_path):
    for kind, make in (("curve", toy2d.make_curve_boundary), ("boundary", toy2d.make_default_boundary)):
        out = tmp_path / f"{kind}.png"
        result = run_cli(["make-boundary", "--kind", kind, "--size", "64", "--out", str(out)])
        assert result.exit_code == 0, result.output
        np.testing.assert_array_equal(toy2d.load_boundary_image(out), make(size=64))


def test_make_boundary_refuses_to_overwrite_and_bad_paths(tmp_path, monkeypatch):
    # a stand-in for the shipped file, so that this test cannot damage the real one
    shipped_path = tmp_path / "toy2d_boundary.png"
    shipped_path.write_bytes(toy2d.DEFAULT_BOUNDARY_PATH.read_bytes())
    monkeypatch.setitem(toy2d.SHIPPED_BOUNDARIES, "boundary", (shipped_path, toy2d.make_default_boundary))
    (tmp_path / "mine.png").write_bytes(b"my own picture")
    (tmp_path / "notes.txt").write_text("keep me")
    cases = [
        ([], f"{shipped_path} exists; pass --overwrite to replace it"),
        (["--out", tmp_path / "mine.png"], f"{tmp_path / 'mine.png'} exists; pass --overwrite to replace it"),
        (["--out", tmp_path / "nodir" / "x.png"], f"folder {tmp_path / 'nodir'} does not exist; create it"),
        (["--out", tmp_path / "x.txt"], "use a name ending in .png"),
        (["--out", tmp_path / "notes.txt", "--overwrite"], "use a name ending in .png"),
    ]
    for args, message in cases:
        result = run_cli(["make-boundary", "--size", "64", *map(str, args)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.output.strip().splitlines() == [result.output.strip()] and message in result.output
    assert shipped_path.read_bytes() == toy2d.DEFAULT_BOUNDARY_PATH.read_bytes()
    assert (tmp_path / "mine.png").read_bytes() == b"my own picture"
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "nodir").exists() and not (tmp_path / "x.txt").exists()
    result = run_cli(["make-boundary", "--size", "64", "--out", str(tmp_path / "mine.png"), "--overwrite"])
    assert result.exit_code == 0, result.output
    expected = toy2d.make_default_boundary(size=64)
    np.testing.assert_array_equal(toy2d.load_boundary_image(tmp_path / "mine.png"), expected)


def test_16bit_boundary_image_is_scaled_by_its_bit_depth(tmp_path):
    """30000 / 65535 = 0.46 is class 0 and 40000 / 65535 = 0.61 class 1, in I;16 PNGs and 32-bit I images."""
    values = np.zeros((16, 16), np.uint16)
    values[:, 8:] = 30000
    values[:4] = 40000
    expected = values >= 32768
    Image.fromarray(values).save(tmp_path / "grey16.png")
    Image.fromarray(values.astype(np.int32), mode="I").save(tmp_path / "grey32.tif")
    for name, mode in (("grey16.png", "I;16"), ("grey32.tif", "I")):
        with Image.open(tmp_path / name) as im:
            assert im.mode == mode
        np.testing.assert_array_equal(toy2d.load_boundary_image(tmp_path / name), expected)
    # 8-bit images are unchanged: 117 / 255 = 0.46 is class 0
    Image.fromarray(np.where(expected, 156, 117).astype(np.uint8)).save(tmp_path / "grey8.png")
    np.testing.assert_array_equal(toy2d.load_boundary_image(tmp_path / "grey8.png"), expected)


def test_huge_boundary_image_gives_one_line_error(tmp_path, monkeypatch):
    name = write_png(tmp_path / "disk.png", disk_image(64, 18.0))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 > 2 x 1000: Pillow's decompression-bomb error
    result = run_cli(["train", f"--dataset=img:{name}", *TINY, "--out-dir", str(tmp_path / "run")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip() == (f"Error: boundary image {name} has more pixels than Pillow reads safely; "
                                     "shrink it (the shipped images are 512x512)")


# -- constraint, losses, EMA ------------------------------------------------------------------------------


def test_contour_mask_on_hand_placed_points():
    image = half_plane(64, 64, 32)  # signed distance: c - 31 in class 1, -(32 - c) in class 0
    dist_t = torch.as_tensor(toy2d.signed_distance_map(image))[None, None]
    # (x before, x after) in pixels, y = 20.5 unless moved vertically
    moves = [
        ((10.5, 20.5), (10.5, 40.5), 1.0),  # along the contour: distance unchanged
        ((10.5, 20.5), (13.5, 20.5), 1.0),  # 3 px towards the boundary
        ((10.5, 20.5), (15.5, 20.5), 0.0),  # 5 px towards the boundary
        ((30.5, 20.5), (34.5, 20.5), 0.0),  # across the boundary: -2 -> +3
        ((20.5, 5.5), (17.5, 60.5), 1.0),  # 3 px away from the boundary (-12 -> -15), far along it
        ((60.5, 20.5), (80.5, 20.5), 1.0),  # outside the image: reads the border column (29 -> 32)
    ]
    x = torch.tensor(toy2d.pixels_to_unit(np.array([m[0] for m in moves]), image.shape), dtype=torch.float32)
    x_hat = torch.tensor(toy2d.pixels_to_unit(np.array([m[1] for m in moves]), image.shape), dtype=torch.float32)
    np.testing.assert_allclose(toy2d.sample_map(dist_t, x).numpy(), [-22, -22, -22, -2, -12, 29], atol=1e-5)
    keep = toy2d.contour_mask(dist_t, x, x_hat, 4.0)
    assert keep.tolist() == [m[2] for m in moves]
    # the authors' zero padding: the point outside the image reads 0 (on the boundary), so 29 -> 0 is cut
    zeros = toy2d.contour_mask(dist_t, x, x_hat, 4.0, padding="zeros")
    assert zeros.tolist() == [m[2] for m in moves[:-1]] + [0.0]
    outside = torch.tensor(toy2d.pixels_to_unit(np.array([[80.5, 20.5], [-3.0, 20.5]]), image.shape))
    assert toy2d.sample_map(dist_t, outside.float(), "zeros").tolist() == [0.0, 0.0]


def test_consistency_losses_by_hand():
    student = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    teacher = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(toy2d.consistency_per_sample(student, teacher, "logits_var"), [0.5, 0.0])
    p = 1 / (1 + np.exp(-1.0))  # softmax([1, 0])[0]
    np.testing.assert_allclose(toy2d.consistency_per_sample(student, teacher, "var"), [(p - 0.5) ** 2, 0], rtol=1e-5)
    # bce against the teacher's 0.5 / 0.5: -(0.5 log p + 0.5 log(1 - p)) for each class, averaged
    bce = -(0.5 * np.log(p + 1e-6) + 0.5 * np.log(1 - p + 1e-6))
    np.testing.assert_allclose(
        toy2d.consistency_per_sample(student, teacher, "bce"), [bce, -np.log(0.5 + 1e-6)], rtol=1e-5
    )


def test_pull_fractions_by_hand():
    # rows: (teacher class, student class, weight): 1->0 counted, 1->0 masked, 0->1 counted twice, agree
    teacher = torch.tensor([[0.0, 2.0], [0.0, 2.0], [3.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    student = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 4.0], [0.0, 1.0]])
    weight = torch.tensor([0.5, 0.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(toy2d.pull_fractions(student, teacher, weight), [1 / 5, 2 / 5])


def test_ema_update_alpha_extremes():
    torch.manual_seed(0)
    student, teacher = toy2d.MLP(2, 8, "batch"), toy2d.MLP(2, 8, "batch")
    student.hidden[1].running_mean.fill_(3.0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    toy2d.ema_update(teacher, student, alpha=1.0)
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, before[k])
    toy2d.ema_update(teacher, student, alpha=0.0)  # copies the student, BatchNorm statistics included
    for k, v in teacher.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, student.state_dict()[k])
    toy2d.ema_update(teacher, toy2d.MLP(2, 8, "batch").requires_grad_(False).apply(_zero), alpha=0.25)
    torch.testing.assert_close(teacher.out.weight, 0.25 * student.out.weight)


def _zero(module):
    for tensor in module.state_dict().values():
        if tensor.is_floating_point():
            tensor.zero_()


def test_mlp_shapes_and_dropout_switch():
    model = toy2d.MLP(3, 16, "none", dropout=0.5).train()
    x = torch.randn(5, 2)
    assert model(x).shape == (5, 2)
    torch.testing.assert_close(model(x, use_dropout=False), model(x, use_dropout=False))


@pytest.mark.parametrize("norm_layer", ["none", "batch"])
def test_mlp_rows_equal_the_repeated_batch(norm_layer):
    """forward(x, rows=r) runs the hidden layers once per point of x; outputs, gradients, the dropout
    masks drawn and BatchNorm's running statistics must be those of forward(x[r]) up to rounding."""
    torch.manual_seed(0)
    x = torch.randn(10, 2, dtype=torch.float64)
    rows = torch.randint(0, 10, (300,))
    rows[:3] = torch.tensor([4, 4, 4])  # uneven counts
    rows[rows == 7] = 8  # and a point absent from the batch
    y = torch.randint(0, 2, (300,))
    base = toy2d.MLP(3, 32, norm_layer, dropout=0.5).double().train()
    results = []
    for dedup in (False, True):
        model = copy.deepcopy(base)
        torch.manual_seed(1)  # the same dropout masks
        logits = model(x, rows=rows) if dedup else model(x[rows])
        torch.nn.functional.cross_entropy(logits, y).backward()
        results.append((logits, [p.grad for p in model.parameters()], model.state_dict()))
    (logits_a, grads_a, state_a), (logits_b, grads_b, state_b) = results
    torch.testing.assert_close(logits_b, logits_a)
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(b, a)
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(state_b[key], state_a[key])
    if norm_layer == "batch":  # the running statistics moved, and the same way
        assert not torch.equal(state_a["hidden.1.running_mean"], base.state_dict()["hidden.1.running_mean"])
        assert not torch.equal(state_a["hidden.4.running_var"], base.state_dict()["hidden.4.running_var"])
    # evaluation mode: plain forward of the rows
    model.eval()
    torch.testing.assert_close(model(x, rows=rows, use_dropout=False), model(x[rows], use_dropout=False))


class XModel(torch.nn.Module):
    """Class-1 logit 10·u (u: the x coordinate in [-1, 1]): class 1 right of the image's centre line."""

    def forward(self, x, use_dropout=True):
        return torch.stack([torch.zeros_like(x[:, 0]), 10 * x[:, 0]], dim=1)


def test_evaluate_error_rates_by_hand():
    # pixel centres at u = -0.8, -0.4, 0, 0.4, 0.8: the model predicts class 1 in columns 2 to 4 (p = 0.5 in
    # column 2 counts as class 1)
    image = half_plane(4, 5, 2)
    image[0, 4], image[1, 0] = False, True  # 2 of the 20 pixels disagree with the prediction
    pos = np.array([[2.5, 1.5], [1.5, 2.5], [4.5, 0.5], [0.5, 3.5], [4.0, 3.0]])  # (x, y) px; x = 2.5: u = 0
    labels = np.array([1, 1, 1, 0, 0])  # p(class 1) = 0.5 → 1 (right); 0.02 → 0 (wrong); right; right; 1 (wrong)
    data = toy2d.ToyData("hand", image, pos, labels, pos[:1], labels[:1])
    result = toy2d.evaluate(XModel(), data, torch.device("cpu"))
    assert result["error_rate"] == pytest.approx(2 / 5) and result["grid_error_rate"] == pytest.approx(2 / 20)
    u = np.array([-0.8, -0.4, 0.0, 0.4, 0.8])
    np.testing.assert_allclose(result["prob_grid"], np.tile(1 / (1 + np.exp(-10 * u)), (4, 1)), rtol=1e-5)


class StubNet(torch.nn.Module):
    def __init__(self, weights, bias):
        super().__init__()
        self.weights, self.bias = torch.tensor(weights), torch.tensor(bias)

    def forward(self, x, use_dropout=True):
        return x @ self.weights + self.bias


@pytest.mark.parametrize("conf_avg", [False, True])
def test_constrained_consistency_loss_by_hand(conf_avg):
    """Loss = Σ per-sample loss × confidence × contour mask / Σ contour mask, on a distance map whose value is
    the x pixel coordinate: a pair is kept when the perturbation moves x by at most R px."""
    size, max_change, sigma_px = 64, 4.0, 4.0
    dist_map_t = torch.arange(size, dtype=torch.float32).expand(size, size)[None, None].contiguous()
    x_u = torch.tensor([[-0.4, 0.1], [-0.2, -0.3], [0.0, 0.3], [0.1, -0.1], [0.2, 0.45], [0.3, -0.4],
                        [-0.1, 0.0], [0.4, 0.2], [-0.3, -0.2], [0.05, 0.35]])
    sigma = torch.tensor([sigma_px * 2 / size, sigma_px * 2 / size])
    teacher = StubNet([[0.0, 6.0], [0.0, 6.0]], [0.0, 0.0])  # confident where |x + y| is large
    student = StubNet([[1.0, -2.0], [3.0, 0.5]], [0.2, -0.1])
    cfg = toy2d.ToyConfig(dist_contour_range=max_change, cons_loss="var", conf_thresh=0.8, conf_avg=conf_avg,
                          cons_dropout=False)
    loss, diagnostics = toy2d.consistency_loss(student, teacher, x_u, cfg, sigma, dist_map_t,
                                               torch.Generator().manual_seed(0))
    noise = torch.randn(x_u.shape, generator=torch.Generator().manual_seed(0))  # the same draw
    x_hat = x_u + noise * sigma
    moved_px = noise[:, 0].abs() * sigma_px  # change of the map = change of the x pixel coordinate
    assert ((moved_px - max_change).abs() > 1e-3).all()
    keep = (moved_px <= max_change).float()
    p_t, p_s = (x_u @ teacher.weights).softmax(1), (x_hat @ student.weights + student.bias).softmax(1)
    confident = (p_t.max(1).values >= 0.8).float()
    per_sample = (p_s - p_t).pow(2).mean(1)  # mean over the 2 classes
    conf_factor = confident.mean() if conf_avg else confident
    expected = (per_sample * conf_factor * keep).sum() / keep.sum()
    assert 0 < keep.sum() < len(keep) and 0 < confident.sum() < len(confident)
    assert ((1 - keep) * conf_factor * per_sample).sum() > 1e-3 * expected  # a dropped pair would count
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(diagnostics[:2], torch.stack([confident.mean(), keep.mean()]))


# -- rendering --------------------------------------------------------------------------------------------


def test_render_prediction_size_and_marks():
    image = np.zeros((40, 60), dtype=bool)
    image[:, 30:] = True
    prob = np.tile(np.linspace(0, 1, 60), (40, 1))
    pos = toy2d.pixel_centres(image.shape)
    vis = toy2d.render_prediction(image, prob, pos, np.array([[10.5, 20.5]]), np.array([1]), "prob")
    assert vis.shape == (40, 60, 3) and vis.dtype == np.uint8
    assert tuple(vis[20, 10]) == toy2d.CLASS_BGR[1]  # labelled point drawn at (x, y) = (10, 20)
    assert tuple(vis[5, 30]) == toy2d.BOUNDARY_BGR  # true boundary
    assert toy2d.render_prediction(image, prob, pos, pos[:0], np.zeros(0), "class").shape == (40, 60, 3)
    assert toy2d.render_distance_map(toy2d.signed_distance_map(image)).shape == (40, 60, 3)


def test_compose_grid_size():
    panels = [toy2d.titled(np.zeros((30, 20, 3), np.uint8), ["a", "b"], bar=10) for _ in range(3)]
    assert toy2d.compose_grid(panels, n_cols=2, margin=5).shape == (2 * 45 + 5, 2 * 25 + 5, 3)


# -- commands ---------------------------------------------------------------------------------------------

TINY = ["--hidden-size", "16", "--n-hidden", "2", "--batch-size", "256", "--threads", "1"]


def run_cli(args):
    return CliRunner().invoke(toy2d.cli, args)


def test_train_command_writes_outputs(tmp_path):
    img = write_png(tmp_path / "disk.png", disk_image(64, 18.0))
    out = tmp_path / "run"
    args = ["train", f"--dataset=img:{img}", "--erode-radius", "4", "--epochs", "2", "--render-every", "1"]
    result = run_cli(args + TINY + ["--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    final = json.loads((out / "final.json").read_text())
    assert 0.0 <= final["error_rate"] <= 1.0 and 0.0 <= final["grid_error_rate"] <= 1.0
    assert final["settings"]["erode_radius"] == 4 and final["settings"]["hidden_size"] == 16
    assert final["n_samples"] == toy2d.erode_classes(disk_image(64, 18.0), 4).sum()
    assert final["n_sup"] == 10 and len(final["sup_points"]) == 10
    assert cv2.imread(str(out / "prediction.png")).shape == (64, 64, 3)
    assert cv2.imread(str(out / "distance_map.png")).shape == (64, 64, 3)
    assert (out / "epochs" / "epoch_00001.png").is_file() and (out / "epochs" / "epoch_00002.png").is_file()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]

    # the same seed gives the same run; an existing run directory is refused without --overwrite
    again = run_cli(args + TINY + ["--out-dir", str(out)])
    assert again.exit_code != 0 and "not empty" in again.output
    again = run_cli(args + TINY + ["--out-dir", str(out), "--overwrite"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "final.json").read_text())["error_rate"] == final["error_rate"]


def test_train_constrained_no_gap_supervised_and_spiral(tmp_path):
    img = write_png(tmp_path / "disk.png", disk_image(48, 14.0))
    base = ["train", f"--dataset=img:{img}", "--epochs", "1"] + TINY
    constrained = [
        "--erode-radius",
        "0",
        "--norm-layer",
        "none",
        "--no-cons-dropout",
        "--cons-loss",
        "logits_var",
        "--cons-weight",
        "1",
        "--perturb-std",
        "8",
        "--dist-contour-range",
        "2",
        "--conf-avg",
    ]
    result = run_cli(base + constrained + ["--out-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    kept = json.loads((tmp_path / "c" / "metrics.jsonl").read_text())["kept_fraction"]
    assert 0.0 < kept < 1.0  # 8 px perturbations, 2 px allowed change: some kept, some masked
    result = run_cli(base + ["--erode-radius", "3", "--cons-weight", "0", "--out-dir", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s" / "metrics.jsonl").read_text())["cons_loss"] == 0.0
    spiral = ["train", "--dataset", "spiral", "--epochs", "0", "--balance-classes"] + TINY
    result = run_cli(spiral + ["--out-dir", str(tmp_path / "sp")])
    assert result.exit_code == 0, result.output
    final = json.loads((tmp_path / "sp" / "final.json").read_text())
    assert final["n_samples"] == 10000 and sorted(p[2] for p in final["sup_points"]) == [0] * 5 + [1] * 5


def test_figure1_tiny(tmp_path):
    img = write_png(tmp_path / "disk.png", disk_image(48, 14.0))
    out = tmp_path / "fig"
    args = ["figure1", f"--dataset=img:{img}", "--gap-radius", "3", "--epochs", "1", "--hidden-size", "8"]
    result = run_cli(args + ["--batch-size", "256", "--threads", "1", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert [e["name"] for e in summary] == [name for name, _, _ in toy2d.FIGURE1_PANELS]
    settings = [e["settings"] for e in summary]
    assert [s["erode_radius"] for s in settings] == [3, 3, 0, 0]
    assert [s["cons_weight"] for s in settings] == [0, 10, 1, 1]
    assert [s["dist_contour_range"] for s in settings] == [0, 0, 0, 4]
    # one labelled set, drawn from the gap data, in every panel (the authors' --sup_path)
    assert [s["sup_erode_radius"] for s in settings] == [None, None, 3, 3]
    points = [json.loads((out / e["name"] / "final.json").read_text())["sup_points"] for e in summary]
    assert all(p == points[0] for p in points)
    assert all(0 <= e["error_rate"] <= 1 and e["seconds"] >= 0 for e in summary)
    figure = cv2.imread(str(out / "figure1.png"))
    assert figure.shape[0] > 2 * 48 and figure.shape[1] > 2 * 48


def test_figure1_panels_run_separately_and_reuse(tmp_path):
    img = write_png(tmp_path / "disk.png", disk_image(48, 14.0))
    out = tmp_path / "fig"
    args = ["figure1", f"--dataset=img:{img}", "--gap-radius", "3", "--epochs", "1", "--hidden-size", "8",
            "--batch-size", "256", "--threads", "1", "--out-dir", str(out)]
    result = run_cli(args + ["--panels", "a,c_no_gap_isotropic"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a_supervised", "c_no_gap_isotropic"]
    assert "needs all four" in result.output and not (out / "figure1.png").exists()
    first = (out / "a_supervised" / "final.json").read_text()

    # without --reuse the finished panels are not overwritten, and the error names --reuse
    result = run_cli(args + ["--panels", "b,d"])
    assert result.exit_code != 0 and "pass --reuse to keep its finished panels" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a_supervised", "c_no_gap_isotropic"]

    # --reuse keeps a and c (same settings), runs b and d, and composes the figure
    result = run_cli(args + ["--reuse"])
    assert result.exit_code == 0, result.output
    assert result.output.count("reusing") == 2 and (out / "figure1.png").is_file()
    assert (out / "a_supervised" / "final.json").read_text() == first
    assert len(json.loads((out / "summary.json").read_text())) == 4

    # other settings are not reused: a different width re-runs every panel
    result = run_cli([*args[:7], "16", *args[8:], "--reuse"])
    assert result.exit_code == 0, result.output
    assert "reusing" not in result.output
    assert json.loads((out / "a_supervised" / "final.json").read_text())["settings"]["hidden_size"] == 16

    result = run_cli(args + ["--panels", "e"])
    assert result.exit_code != 0 and "unknown panel 'e'" in result.output and "Traceback" not in result.output

    # --labels-per-panel: the no-gap panels draw their own points, so c and d re-run (a and b are kept)
    widths = [*args[:7], "16", *args[8:], "--reuse"]
    result = run_cli([*widths, "--labels-per-panel"])
    assert result.exit_code == 0, result.output
    assert result.output.count("reusing") == 2
    final_c = json.loads((out / "c_no_gap_isotropic" / "final.json").read_text())
    final_a = json.loads((out / "a_supervised" / "final.json").read_text())
    assert final_c["settings"]["sup_erode_radius"] is None and final_c["sup_points"] != final_a["sup_points"]

    # a final.json written before a setting existed had that setting's default: still reused
    for name in ("a_supervised", "c_no_gap_isotropic"):
        path = out / name / "final.json"
        final = json.loads(path.read_text())
        del final["settings"]["sup_erode_radius"]
        path.write_text(json.dumps(final))
    result = run_cli([*widths, "--labels-per-panel"])
    assert result.exit_code == 0 and result.output.count("reusing") == 4, result.output

    # --conf-avg changes the three consistency panels only: the supervised one is reused
    result = run_cli([*widths, "--labels-per-panel", "--conf-avg"])
    assert result.exit_code == 0 and result.output.count("reusing") == 1, result.output
    settings = {e["name"]: e["settings"] for e in json.loads((out / "summary.json").read_text())}
    assert [settings[name]["conf_avg"] for name in sorted(settings)] == [False, True, True, True]
    assert (out / "distance_map.png").read_bytes() == (out / "d_no_gap_constrained" / "distance_map.png").read_bytes()

    # panels kept with their prediction.png only (as in benchmarks/results/) still compose the figure
    for path in [*out.glob("*/distance_map.png"), out / "distance_map.png", out / "figure1.png"]:
        path.unlink()
    result = run_cli([*widths, "--labels-per-panel", "--conf-avg"])
    assert result.exit_code == 0 and result.output.count("reusing") == 4, result.output
    assert (out / "figure1.png").is_file() and not (out / "distance_map.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "moon"], "use boundary, curve, spiral or img:PATH"),
        (["--erode-radius", "-3"], "--erode-radius"),
        (["--perturb-std", "-1"], "--perturb-std"),
        (["--norm-layer", "group"], "--norm-layer"),
        (["--dataset", "spiral", "--sup-erode-radius", "3"], "--sup-erode-radius"),
    ],
)
def test_bad_option_gives_one_line_usage_error(tmp_path, args, message):
    result = run_cli(["train", *args, *TINY, "--out-dir", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # a usage error, not a traceback
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error_lines) == 1 and message in error_lines[0], result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "img:/nonexistent/boundary.png"], "boundary image not found: /nonexistent/boundary.png; pass"),
        (["--dataset", "img:{folder}"], "is a directory; pass an image file"),
        (["--dataset", "img:{unreadable}"], "cannot read boundary image"),
        (["--dataset", "img:{one_class}", "--epochs", "0"], "white.png: the boundary image must contain both classes"),
        (["--dataset", "img:{disk}", "--erode-radius", "40"], "no pixel of class 0; use a smaller --erode-radius"),
        (["--dataset", "img:{disk}", "--erode-radius", "0", "--sup-erode-radius", "30", "--epochs", "0"],
         "--sup-erode-radius 30 leaves no pixel of class 0; use a smaller --sup-erode-radius"),
        (["--dataset", "img:{disk}", "--erode-radius", "0", "--n-sup", "5000", "--epochs", "0"],
         "use a smaller --n-sup"),
    ],
)
def test_bad_data_gives_one_line_error(tmp_path, args, message):
    """Errors about files and data: exit code 1 and only "Error: ...", without click's usage lines."""
    (tmp_path / "bad.png").write_text("not a png")
    (tmp_path / "folder").mkdir()
    files = {
        "unreadable": str(tmp_path / "bad.png"),
        "folder": str(tmp_path / "folder"),
        "one_class": write_png(tmp_path / "white.png", np.ones((16, 16), bool)),
        "disk": write_png(tmp_path / "disk.png", disk_image(48, 14.0)),
    }
    args = [a.format(**files) for a in args]
    out = [] if "--out-dir" in args else ["--out-dir", str(tmp_path / "run")]
    result = run_cli(["train", *args, *TINY, *out])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and message in lines[-1], result.output
    assert not any(line.startswith(("Usage", "Try")) for line in lines), result.output
    assert (tmp_path / "bad.png").read_text() == "not a png"


def test_out_dir_that_cannot_be_created_gives_one_line_error(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    for command in ("train", "figure1"):
        result = run_cli([command, "--epochs", "0", "--out-dir", str(tmp_path / "notes.txt" / "sub")])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.output.strip().splitlines() == [
            f"Error: cannot create --out-dir {tmp_path / 'notes.txt' / 'sub'} (Not a directory); choose a folder "
            "you can write to"
        ]
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_spiral_refuses_an_explicit_erosion():
    result = CliRunner().invoke(toy2d.cli, ["train", "--dataset", "spiral", "--erode-radius", "10", "--out-dir", "x"])
    assert result.exit_code != 0 and "not supported with --dataset spiral" in result.output
