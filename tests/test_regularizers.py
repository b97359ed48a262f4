"""The perturbations of issue 4: alignment of paired views, ICT, VAT, cow masks, ClassMix, the registry."""
import json
import math

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
from test_train import TINY, run
from torch import nn

import datapipe
import regularizers
from datapipe.loaders import PairedViews
from datapipe.transforms import AugParams, warp
from regularizers.aug import AugConsistency, warp_to_student, warped_validity
from regularizers.box_mixing import CutMix, Cutout, box_mask_generator
from regularizers.classmix import ClassMix, choose_classes, class_mix_masks
from regularizers.cow_masks import (
    CowMaskGenerator,
    CowMix,
    CowOut,
    gaussian_blur,
    parse_sigma_range,
    reflect_blur_matrices,
)
from regularizers.ict import ICT, ict_lambdas, mix
from regularizers.losses import ConsistencyLoss, pixel_loss
from regularizers.vat import (
    VAT,
    adversarial_direction,
    curvature_product,
    curvature_product_autograd,
    finite_difference_direction,
    image_gradient_magnitude,
    normalise_per_image,
    per_image_norm,
    vat_xi,
)


class Ramps(datapipe.SegDataset):
    """One image whose R channel is its x coordinate and G channel its y coordinate."""

    has_labels = False

    def __init__(self, height=90, width=120):
        super().__init__(2)
        yy, xx = np.mgrid[0:height, 0:width]
        self.image = np.stack([xx, yy, np.zeros_like(xx)], axis=2).astype(np.uint8)

    def __len__(self):
        return 1

    def load_image(self, index):
        return self.image


def source_points(m, hw, step=1):
    """(2, h, w) source coordinates of the pixel centres of a view, at full (step 1) or 1/step resolution."""
    h, w = hw[0] // step, hw[1] // step
    vv, uu = np.mgrid[0:h, 0:w] * step + (step - 1) / 2  # a coarse pixel's centre in full-resolution pixels
    pts = np.linalg.inv(m) @ np.stack([uu.ravel(), vv.ravel(), np.ones(h * w)])
    return pts[:2].reshape(2, h, w)


def matrix3(m23):
    return np.vstack([m23.numpy().astype(np.float64), [0.0, 0.0, 1.0]])


PAIRED_PARAMS = [
    (AugParams(crop_size=(40, 48), scale_range=(0.7, 1.4), rot_mag=30, hflip=True, vflip=True), False),
    (AugParams(crop_size=(40, 48), scale_range=(0.7, 1.4), rot_mag=30, hflip=True, vflip=True), True),
    (AugParams(crop_size=(44, 44), scale_range=(0.5, 1.5), scale_step=0.1, hflip=True, hvflip=True), False),
    (AugParams(crop_size=(44, 44), scale_range=(0.5, 1.5), scale_step=0.1, hflip=True), "teacher_unscaled"),
]


@pytest.mark.parametrize("params, free", PAIRED_PARAMS)
def test_paired_views_align_opencv_and_torch(params, free):
    """OpenCV-warped images and torch-warped maps agree pixel for pixel away from the borders."""
    dataset = Ramps()
    src_h, src_w = dataset.image.shape[:2]
    views = PairedViews(dataset, params, seed=3, stream=1, offset_range=16, free_scale_rot=free is True,
                        teacher_unscaled=free == "teacher_unscaled")
    n_compared = 0
    for draw in range(12):
        sample = views[(0, draw)]
        m_t, m_s = matrix3(sample["matrix"]), matrix3(sample["matrix_s"])
        hw_t, hw_s = tuple(sample["image"].shape[-2:]), tuple(sample["image_s"].shape[-2:])
        theta = sample["theta"][None].double()
        # the crop centres are at most offset_range apart in the student's scaled frame
        if free is False:
            centres = [np.linalg.inv(m) @ [(hw[1] - 1) / 2, (hw[0] - 1) / 2, 1] for m, hw in ((m_t, hw_t), (m_s, hw_s))]
            scale = math.sqrt(abs(np.linalg.det(m_s[:2, :2])))
            assert np.linalg.norm(centres[0] - centres[1]) * scale <= math.sqrt(2) * 16.5
        # exact: teacher-view source coordinates, warped by torch, are the student view's source coordinates
        for step in (1, 2):  # a prediction at the view's size and one at half its size
            coords_t = torch.from_numpy(source_points(m_t, hw_t, step))[None]
            coords_s = source_points(m_s, hw_s, step)
            out_hw = coords_s.shape[1:]
            warped = warp_to_student(coords_t, theta, out_hw)[0].numpy()
            inside = warp_to_student(torch.ones_like(coords_t[:, :1]), theta, out_hw)[0, 0].numpy() > 1 - 1e-9
            assert inside.mean() > 0.05
            np.testing.assert_allclose(warped[:, inside], coords_s[:, inside], atol=1e-3)  # float32 matrices
        # OpenCV path: float ramps warped with each view's matrix; torch warps the teacher view
        ramp = dataset.image[..., :2].astype(np.float32)
        view_t, _, _ = warp(ramp, m_t, hw_t)
        view_s, _, _ = warp(ramp, m_s, hw_s)
        in_source = [(p[0] >= 0) & (p[0] <= src_w - 1) & (p[1] >= 0) & (p[1] <= src_h - 1)
                     for p in (source_points(m_t, hw_t), source_points(m_s, hw_s))]
        interior = warped_validity(torch.from_numpy(in_source[0].astype(np.float64))[None, None], theta, hw_s)
        interior = interior[0, 0].numpy().astype(bool) & in_source[1]
        warped = warp_to_student(torch.from_numpy(view_t).permute(2, 0, 1)[None].double(), theta, hw_s)[0]
        # OpenCV interpolates at 1/32 px, so the ramps agree to a few hundredths of a pixel
        np.testing.assert_allclose(warped.numpy()[:, interior], view_s.transpose(2, 0, 1)[:, interior], atol=0.08)
        n_compared += interior.sum()
    assert n_compared > 5000


def test_paired_stream_batches_and_resume():
    bundle = datapipe.build_dataset("synthetic", n_train=12)
    params = AugParams(crop_size=(48, 48), scale_range=(0.5, 1.5), hflip=True)

    def batches(start, n):
        it = datapipe.stream_loader(bundle.train, params, 4, 0, 1, False, (0.5,) * 3, (0.25,) * 3, 0, start,
                                    paired=True, offset_range=8)
        return [next(it) for _ in range(n)]

    full = batches(0, 3)
    b = full[0]
    assert set(b) == {"image", "valid", "matrix", "image_s", "valid_s", "matrix_s", "theta"}
    assert b["image_s"].shape == (4, 3, 48, 48) and b["valid_s"].dtype == torch.float32
    assert b["theta"].shape == (4, 2, 3) and b["image_s"].abs().max() < 3  # normalised
    torch.testing.assert_close(batches(8, 1)[0]["theta"], full[2]["theta"])


def coordinate_views(params, draws=4, seed=0):
    """A paired batch of float ramp images (the views of ``Ramps``) built from ``PairedViews``' matrices.

    Validity here is strict (bilinear support inside the source), so that no padding blends into a ramp.
    """
    dataset = Ramps(64, 80)
    views = PairedViews(dataset, params, seed=seed, stream=1, offset_range=12)
    ramp = dataset.image[..., :2].astype(np.float32) / 40.0
    out = {k: [] for k in ("image", "valid", "image_s", "valid_s", "theta")}
    for draw in range(draws):
        sample = views[(0, draw)]
        for suffix in ("", "_s"):
            m, hw = matrix3(sample["matrix" + suffix]), tuple(sample["image" + suffix].shape[-2:])
            view, _, _ = warp(ramp, m, hw)
            xs, ys = source_points(m, hw)
            valid = (xs >= 0) & (xs <= 79) & (ys >= 0) & (ys <= 63)
            out["image" + suffix].append(torch.from_numpy(view).permute(2, 0, 1))
            out["valid" + suffix].append(torch.from_numpy(valid)[None].float())
        out["theta"].append(sample["theta"])
    return {k: torch.stack(v) for k, v in out.items()}


def test_aug_regularizer_aligns_teacher_and_student():
    """A pointwise linear network is equivariant to the warp: the aligned loss vanishes, a misaligned one not."""
    net = nn.Conv2d(2, 3, 1)
    batch = coordinate_views(AugParams(crop_size=(40, 40), scale_range=(0.8, 1.2), rot_mag=20, hflip=True))
    reg = AugConsistency(ConsistencyLoss("logits_var", conf_thresh=0.0), np.random.default_rng(0))
    with torch.no_grad():
        loss, stats = reg(net, net, batch)
        misaligned, _ = reg(net, net, {**batch, "theta": torch.eye(2, 3).expand(4, 2, 3)})
    assert 0.2 < stats["mask_mean"] < 1.0
    assert loss < 1e-4 and misaligned > 1e-2


def test_ict_lambda_distribution():
    lam = ict_lambdas(20000, 0.1, np.random.default_rng(0))
    grid = np.linspace(0.01, 0.99, 99)  # the empirical CDF against Beta's (float64 rounds ~1% of draws to 1.0)
    empirical = (lam[:, None] <= grid).mean(axis=0)
    assert np.abs(empirical - scipy.stats.beta.cdf(grid, 0.1, 0.1)).max() < 0.01
    assert abs(lam.mean() - 0.5) < 0.02 and abs(lam.var() - 0.25 / 1.2) < 0.01  # Beta(α, α): var = 1/(4(2α+1))
    assert np.mean((lam < 0.05) | (lam > 0.95)) > 0.6  # α = 0.1: mostly close to one of the images


class FixedLambda:
    def __init__(self, lam):
        self.lam = np.asarray(lam, dtype=np.float64)

    def beta(self, a, b, size):
        return self.lam[:size]


class Recorder(nn.Module):
    """A 1×1 convolution that remembers its last input."""

    def __init__(self, c_out=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, c_out, 1)

    def forward(self, x):
        self.last = x.detach().clone()
        return self.conv(x) * 4


@pytest.mark.parametrize("kind", ["var", "logits_var"])
def test_ict_mixes_inputs_targets_validity(kind):
    torch.manual_seed(0)
    x_a, x_b = torch.randn(3, 3, 5, 6), torch.randn(3, 3, 5, 6)
    v_a, v_b = torch.ones(3, 1, 5, 6), torch.zeros(3, 1, 5, 6)
    lam = np.array([0.0, 1.0, 0.3])
    torch.testing.assert_close(mix(x_a, x_b, torch.tensor(lam))[1], x_a[1])
    torch.testing.assert_close(mix(x_a, x_b, torch.tensor(lam)) + mix(x_b, x_a, torch.tensor(lam)), x_a + x_b)
    student, teacher = Recorder(seed=1), Recorder(seed=2)
    cons = ConsistencyLoss(kind, conf_thresh=0.6)
    loss, stats = ICT(cons, FixedLambda(lam))(student, teacher, {"image": x_a, "valid": v_a},
                                              {"image": x_b, "valid": v_b})
    lam_t = torch.tensor(lam, dtype=torch.float32).view(3, 1, 1, 1)
    torch.testing.assert_close(student.last, lam_t * x_a + (1 - lam_t) * x_b)
    with torch.no_grad():
        t_a, t_b = teacher(x_a), teacher(x_b)
        prob = lam_t * F.softmax(t_a, 1) + (1 - lam_t) * F.softmax(t_b, 1)
        target = lam_t * t_a + (1 - lam_t) * t_b if kind == "logits_var" else prob
        s = student(lam_t * x_a + (1 - lam_t) * x_b)
    confident = (prob.max(1).values >= 0.6).float()
    expected = (pixel_loss(kind, s, target) * lam_t[:, 0]).mean() * confident.mean()  # validity mixes to λ
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["conf_frac"].item() == pytest.approx(confident.mean().item())  # from the mixed probabilities


@pytest.mark.parametrize("kind, per_pixel", [("var", False), ("logits_var", True), ("pseudo_ce", False)])
def test_ict_mix_confidences_by_hand(kind, per_pixel):
    """--ict-mix-confidences: confidence = λ·max p(x_a) + (1 − λ)·max p(x_b) (the authors' ICT), which is never
    below the confidence of the mixed prediction, so at least as many pixels count."""
    torch.manual_seed(0)
    x_a, x_b = torch.randn(3, 3, 5, 6), torch.randn(3, 3, 5, 6)
    valid = torch.ones(3, 1, 5, 6)
    lam = np.array([0.2, 0.9, 0.5])
    student, teacher = Recorder(seed=1), Recorder(seed=2)
    cons = ConsistencyLoss(kind, conf_thresh=0.55, conf_per_pixel=per_pixel)
    batch, partner = {"image": x_a, "valid": valid}, {"image": x_b, "valid": valid}
    loss, stats = ICT(cons, FixedLambda(lam), ict_mix_confidences=True)(student, teacher, batch, partner)
    _, plain_stats = ICT(cons, FixedLambda(lam))(student, teacher, batch, partner)
    lam_t = torch.tensor(lam, dtype=torch.float32).view(3, 1, 1, 1)
    with torch.no_grad():
        p_a, p_b = F.softmax(teacher(x_a), 1), F.softmax(teacher(x_b), 1)
        prob = lam_t * p_a + (1 - lam_t) * p_b
        target = lam_t * teacher(x_a) + (1 - lam_t) * teacher(x_b) if kind == "logits_var" else prob
        s = student(lam_t * x_a + (1 - lam_t) * x_b)
    confident = ((lam_t * p_a.max(1, keepdim=True).values + (1 - lam_t) * p_b.max(1, keepdim=True).values)
                 >= 0.55).float()[:, 0]
    per_pixel_loss = pixel_loss(kind, s, target)
    if per_pixel or kind == "pseudo_ce":
        expected = (per_pixel_loss * confident).mean()
    else:
        expected = per_pixel_loss.mean() * confident.mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["conf_frac"].item() == pytest.approx(confident.mean().item())
    assert plain_stats["conf_frac"].item() < stats["conf_frac"].item()  # this draw has pixels in between


class TinyNet(nn.Module):
    def __init__(self, n_classes=3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Tanh(),
                                  nn.Conv2d(8, n_classes, 3, padding=1))

    def forward(self, x):
        return self.body(x)


def trained_tiny_net(seed=0):
    """A tiny network fitted for a few steps to a colour rule, so its predictions have structure."""
    torch.manual_seed(seed)
    net = TinyNet()
    opt = torch.optim.Adam(net.parameters(), 0.05)
    for _ in range(40):
        x = torch.randn(8, 3, 12, 12)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return net


@pytest.mark.parametrize("adaptive", [True, False])
def test_vat_radius_per_image_and_modes_restored(adaptive):
    torch.manual_seed(0)
    x = torch.randn(3, 3, 12, 12) * torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1, 1)
    net = trained_tiny_net()
    net.train()
    net.body[1].eval()  # a frozen BatchNorm stays frozen
    reg = VAT(ConsistencyLoss("var"), np.random.default_rng(0), vat_radius=0.7, adaptive_vat_radius=adaptive)
    r_adv = reg.perturbation(net, x, torch.ones(3, 1, 12, 12))
    expected = 0.7 * (image_gradient_magnitude(x).view(3) if adaptive else torch.full((3,), math.sqrt(3 * 144)))
    torch.testing.assert_close(per_image_norm(r_adv).view(3), expected, rtol=1e-5, atol=0)
    dv, dh = x[0, :, 2:] - x[0, :, :-2], x[0, :, :, 2:] - x[0, :, :, :-2]
    by_hand = 0.5 * torch.sqrt((dv**2).sum() + (dh**2).sum())
    torch.testing.assert_close(image_gradient_magnitude(x)[0, 0, 0, 0], by_hand)
    assert net.training and net.body[0].training and not net.body[1].training
    loss, stats = reg(net, net, {"image": x, "valid": torch.ones(3, 1, 12, 12)})
    assert torch.isfinite(loss) and "conf_frac" in stats and net.training


def divergence(net, x, r, kind="var"):
    with torch.no_grad():
        p = F.softmax(net(x), 1) if kind != "logits_var" else net(x)
        return pixel_loss(kind, net(x + r), p).mean(dim=(1, 2))


def test_vat_direction_beats_random_directions():
    net = trained_tiny_net().eval()
    torch.manual_seed(1)
    x = torch.randn(4, 3, 12, 12)
    gen = torch.Generator().manual_seed(0)
    eps = 0.05 * per_image_norm(x)
    direction = adversarial_direction(net, x, torch.ones(4, 1, 12, 12), "var", gen)
    adv = divergence(net, x, eps * direction)
    randoms = torch.stack([divergence(net, x, eps * F.normalize(torch.randn_like(x).flatten(1)).view_as(x))
                           for _ in range(10)])
    assert (adv > 2 * randoms.max(dim=0).values).all()


@pytest.mark.parametrize("kind", ["var", "kld", "logits_var", "logits_smoothl1", "bce", "pseudo_ce"])
def test_vat_direction_is_the_authors_power_iteration(kind):
    """In float64 the authors' finite difference at their ξ is exact enough to compare with."""
    net = trained_tiny_net().double().eval()
    torch.manual_seed(2)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    valid = torch.ones(2, 1, 12, 12, dtype=torch.float64)
    direction = adversarial_direction(net, x, valid, kind, torch.Generator().manual_seed(5))
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)  # the same noise
    r = (vat_xi(12, 12) * d / per_image_norm(d)).requires_grad_(True)
    with torch.no_grad():
        z0 = net(x)
    target = z0 if kind.startswith("logits") else F.softmax(z0, 1)
    (g,) = torch.autograd.grad(pixel_loss(kind, net(x + r), target).mean(), r)
    cosine = F.cosine_similarity(direction.flatten(1), g.flatten(1) / g.flatten(1).norm(dim=1, keepdim=True))
    assert (cosine > 0.999).all(), cosine


@pytest.mark.parametrize("kind", ["var", "kld", "logits_var", "logits_smoothl1"])
def test_vat_closed_form_curvature_is_the_double_backward(kind):
    """The per-pixel Hessian products give the direction the autograd double backward gives."""
    torch.manual_seed(4)
    z0, u = 3 * torch.randn(3, 5, 6, 7), torch.randn(3, 5, 6, 7)
    mask = (torch.rand(3, 1, 6, 7) > 0.3).float()
    closed = normalise_per_image(curvature_product(kind, z0, u, mask))
    reference = curvature_product_autograd(kind, z0, u, mask, xi=1.0)
    torch.testing.assert_close(closed, reference, rtol=1e-4, atol=1e-6)
    assert curvature_product("bce", z0, u, mask) is None and curvature_product("pseudo_ce", z0, u, mask) is None


def test_vat_finite_difference_option_matches_in_float64():
    """--vat-finite-diff (the authors' literal power iteration) agrees with the default where float64 resolves ξ."""
    net = trained_tiny_net().double().eval()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    valid = torch.ones(2, 1, 12, 12, dtype=torch.float64)
    exact = adversarial_direction(net, x, valid, "var", torch.Generator().manual_seed(7))
    literal = finite_difference_direction(net, x, valid, "var", torch.Generator().manual_seed(7))
    assert (F.cosine_similarity(exact.flatten(1), literal.flatten(1)) > 0.999).all()
    vat = VAT(ConsistencyLoss("var", 0.0), np.random.default_rng(0), vat_finite_diff=True)
    assert vat.direction is finite_difference_direction


def test_cow_masks_keep_proportion_p():
    rng = np.random.default_rng(0)
    for p in (0.2, 0.5, 0.8):
        masks = CowMaskGenerator((p, p), (4, 16)).generate(300, (48, 64), rng)
        assert masks.shape == (300, 1, 48, 64) and set(np.unique(masks)) <= {0.0, 1.0}
        assert abs(masks.mean() - p) < 0.01
        # per mask only about p: the threshold is the Gaussian quantile, and a 48×64 mask at σ = 16 has few blobs
        assert np.abs(masks.mean(axis=(1, 2, 3)) - p).mean() < 0.05
    kept = CowMaskGenerator((0, 1)).generate(400, (32, 32), rng).mean(axis=(1, 2, 3))
    assert abs(kept.mean() - 0.5) < 0.05 and kept.min() < 0.05 and kept.max() > 0.95
    # larger σ, fewer and larger blobs: the mask changes less often between neighbouring pixels
    fine, coarse = (CowMaskGenerator((0.5, 0.5), (s, s)).generate(50, (64, 64), rng) for s in (2, 12))
    assert np.abs(np.diff(fine, axis=3)).mean() > 2 * np.abs(np.diff(coarse, axis=3)).mean()
    assert parse_sigma_range("4:16") == (4.0, 16.0) and parse_sigma_range(8) == (8.0, 8.0)
    for bad in ("0:4", "16:4", "a"):
        with pytest.raises(ValueError):
            parse_sigma_range(bad)


def test_cow_mask_blur_equals_scipys_reflect_filter(monkeypatch):
    from scipy.ndimage import gaussian_filter, gaussian_filter1d

    import regularizers.cow_masks as cow_masks

    rng = np.random.default_rng(0)
    # kernels shorter and longer than the signal (several mirror images), odd sizes, one pixel
    for size, sigma in ((64, 4.0), (64, 16.0), (48, 11.3), (7, 9.0), (1, 2.0), (321, 5.0)):
        v = rng.standard_normal(size)
        matrix = reflect_blur_matrices(size, np.array([sigma]))[0]
        np.testing.assert_allclose(matrix @ v, gaussian_filter1d(v, sigma, mode="reflect", truncate=4.0), atol=1e-13)
    # both paths of gaussian_blur: the matrix products (long kernels) and scipy's filter (short ones)
    matrices = []
    monkeypatch.setattr(cow_masks, "reflect_blur_matrices",
                        lambda *args: matrices.append(args[0]) or reflect_blur_matrices(*args))
    for shape, sigma_range in (((16, 64, 64), (4, 16)), ((3, 48, 80), (8, 30)), ((2, 200, 300), (1, 3))):
        images, sigmas = rng.standard_normal(shape), np.exp(rng.uniform(*np.log(sigma_range), size=shape[0]))
        expected = np.stack([gaussian_filter(im, s, mode="reflect", truncate=4.0)
                             for im, s in zip(images, sigmas, strict=True)])
        np.testing.assert_allclose(gaussian_blur(images, sigmas), expected, atol=1e-13)
    assert matrices == [64, 48, 80]  # square images build one matrix per mask; the short kernels took scipy's filter


def test_classmix_mask_is_the_chosen_classes():
    pred = torch.tensor([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 4, 1]]).expand(2, 3, 4).clone()
    pred[1, 0, 0] = 5  # image 1 also has class 5, but on an invalid pixel
    valid = torch.ones(2, 1, 3, 4)
    valid[1, 0, 0, 0] = 0
    masks = class_mix_masks(pred, valid, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    for i in range(2):
        chosen = choose_classes(np.arange(5), rng)
        assert len(chosen) == 3  # ceil(5 / 2) of the classes predicted on valid pixels
        np.testing.assert_array_equal(masks[i, 0].numpy(), np.isin(pred[i].numpy(), chosen).astype(np.float32))
    assert len(choose_classes(np.array([3]), rng)) == 1 and len(choose_classes(np.arange(4), rng)) == 2
    # an image with no valid pixel draws from every class it predicts; class ids need not be contiguous
    pred = torch.stack([torch.full((3, 4), 2), torch.tensor([[7, 7, 9, 9]] * 3)])
    valid = torch.stack([torch.ones(1, 3, 4), torch.zeros(1, 3, 4)])
    masks, rng = class_mix_masks(pred, valid, np.random.default_rng(3)), np.random.default_rng(3)
    for i, present in enumerate((np.array([2]), np.array([7, 9]))):
        chosen = choose_classes(present, rng)
        np.testing.assert_array_equal(masks[i, 0].numpy(), np.isin(pred[i].numpy(), chosen).astype(np.float32))


def test_classmix_pastes_image_a_where_its_chosen_classes_are():
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 0, 0]])
    x_a, x_b = torch.randn(1, 3, 3, 4), torch.randn(1, 3, 3, 4)

    class Oracle(nn.Module):  # the teacher predicts ``label`` for any input
        def forward(self, x):
            return F.one_hot(label, 3).permute(2, 0, 1)[None].float() * 10

    student = Recorder()
    reg = ClassMix(ConsistencyLoss("var"), np.random.default_rng(0))
    ones = torch.ones(1, 1, 3, 4)
    reg(student, Oracle(), {"image": x_a, "valid": ones}, {"image": x_b, "valid": ones})
    from_a = torch.isclose(student.last, x_a).all(dim=1)[0]
    chosen = label[from_a].unique()
    assert len(chosen) == 2 and torch.equal(from_a, torch.isin(label, chosen))
    torch.testing.assert_close(student.last[0][:, ~from_a], x_b[0][:, ~from_a])


class FixedMasks:
    """A mask generator that always returns the same (N, 1, H, W) masks."""

    def __init__(self, masks):
        self.masks = np.asarray(masks, dtype=np.float32)

    def generate(self, n_masks, mask_shape, rng):
        assert (n_masks, *mask_shape) == (self.masks.shape[0], *self.masks.shape[2:])
        return self.masks.copy()


class ContextTeacher(nn.Module):
    """Logits from each pixel and from the image's mean: mixing its logits is not running it on a mixed image."""

    def forward(self, x):
        context = x.mean(dim=(1, 2, 3))[:, None, None]
        return 3 * torch.stack([x[:, 0] - x[:, 1], x[:, 1] * x[:, 2] + context, torch.tanh(x[:, 2]) - context], 1)


def mixing_inputs(seed=0):
    """Two batches (2, 3, 4, 5) with holes in their validity, and box masks that differ per image."""
    g = torch.Generator().manual_seed(seed)
    x_a, x_b = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    v_a, v_b = torch.ones(2, 1, 4, 5), torch.ones(2, 1, 4, 5)
    v_a[0, 0, :, 0] = 0  # a padded column in a, a padded row in b
    v_b[1, 0, 3] = 0
    masks = np.zeros((2, 1, 4, 5), np.float32)
    masks[0, 0, 1:3, 1:4] = 1
    masks[1, 0, 0:4, 3:5] = 1
    return x_a, x_b, v_a, v_b, masks


CONF = 0.7  # the teacher's confidence threshold in these tests: some pixels pass it, some do not


def loss_by_hand(student_logits, target, loss_mask):
    """var loss, summed over classes, × loss mask, averaged over ALL N·H·W pixels, × confident fraction."""
    n, _, h, w = student_logits.shape
    per_pixel = (F.softmax(student_logits, 1) - target).pow(2).sum(1) * loss_mask[:, 0]
    conf_frac = (target.max(1).values >= CONF).float().mean()
    return per_pixel.sum() / (n * h * w) * conf_frac, conf_frac


@pytest.mark.parametrize("cls", [CutMix, CowMix])
def test_cutmix_takes_box_pixels_from_the_partner_and_mixes_teacher_logits(cls):
    x_a, x_b, v_a, v_b, masks = mixing_inputs()
    m = torch.from_numpy(masks).bool()  # M = 1 → the pixel comes from x_b (the partner)
    student, teacher = Recorder(seed=1), ContextTeacher()
    reg = cls(ConsistencyLoss("var", conf_thresh=CONF), np.random.default_rng(0), FixedMasks(masks))
    loss, stats = reg(student, teacher, {"image": x_a, "valid": v_a}, {"image": x_b, "valid": v_b})
    x_mixed = torch.where(m, x_b, x_a)
    torch.testing.assert_close(student.last, x_mixed)
    with torch.no_grad():
        t_a, t_b = teacher(x_a), teacher(x_b)
        target = F.softmax(torch.where(m, t_b, t_a), 1)  # softmax after mixing the logits
        assert not torch.allclose(target, F.softmax(teacher(x_mixed), 1), atol=1e-3)  # the teacher needs context
        expected, conf_frac = loss_by_hand(student(x_mixed), target, torch.where(m, v_b, v_a))
    assert 0 < conf_frac < 1
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["conf_frac"].item() == pytest.approx(conf_frac.item())
    assert stats["mask_mean"].item() == pytest.approx(masks.mean())


@pytest.mark.parametrize("loss_kind", ["var", "pseudo_ce"])
def test_cutmix_with_a_box_of_area_zero_is_plain_consistency(loss_kind):
    """benchmarks/mask_vs_loss's "no mask" cell: --reg cutmix --mask-prop-range 0 gives the student the
    unlabelled images themselves and the teacher's prediction on them as the target, bit for bit."""
    x_a, x_b, v_a, v_b, _ = mixing_inputs()
    student, teacher = Recorder(seed=1), ContextTeacher()
    generator = box_mask_generator(mask_prop_range="0")
    reg = CutMix(ConsistencyLoss(loss_kind, conf_thresh=CONF), np.random.default_rng(0), generator)
    loss, stats = reg(student, teacher, {"image": x_a, "valid": v_a}, {"image": x_b, "valid": v_b})
    assert torch.equal(student.last, x_a) and stats["mask_mean"].item() == 0.0
    with torch.no_grad():
        expected, _ = ConsistencyLoss(loss_kind, conf_thresh=CONF)(student(x_a), F.softmax(teacher(x_a), 1), v_a)
    assert loss.item() == expected.item()


@pytest.mark.parametrize("cls", [Cutout, CowOut])
def test_cutout_zeroes_outside_the_mask_and_counts_only_masked_valid_pixels(cls):
    x, _, valid, _, masks = mixing_inputs(1)
    m = torch.from_numpy(masks)
    student, teacher = Recorder(seed=2), ContextTeacher()
    reg = cls(ConsistencyLoss("var", conf_thresh=CONF), np.random.default_rng(0), FixedMasks(masks))
    loss, stats = reg(student, teacher, {"image": x, "valid": valid})
    x_cut = torch.where(m.bool(), x, torch.zeros(()))  # the student sees x where M = 1, the mean (0) elsewhere
    torch.testing.assert_close(student.last, x_cut)
    with torch.no_grad():
        target = F.softmax(teacher(x), 1)  # the teacher sees the whole image
        expected, conf_frac = loss_by_hand(student(x_cut), target, m * valid)
        without_mask, _ = loss_by_hand(student(x_cut), target, valid)
    assert 0 < conf_frac < 1 and abs(without_mask.item() - expected.item()) > 1e-3 * expected.item()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["conf_frac"].item() == pytest.approx(conf_frac.item())


def test_classmix_input_target_and_loss_mask_by_hand():
    x_a, x_b, v_a, v_b, _ = mixing_inputs(2)
    student, teacher = Recorder(seed=3), ContextTeacher()
    reg = ClassMix(ConsistencyLoss("var", conf_thresh=CONF), np.random.default_rng(4))
    loss, stats = reg(student, teacher, {"image": x_a, "valid": v_a}, {"image": x_b, "valid": v_b})
    with torch.no_grad():
        t_a, t_b = teacher(x_a), teacher(x_b)
        # the mask itself is tested above; here: M = 1 → the pixel comes from x_a (the opposite of CutMix)
        m = class_mix_masks(t_a.argmax(1), v_a, np.random.default_rng(4)).bool()
        assert 0 < m.float().mean() < 1
        x_mixed = torch.where(m, x_a, x_b)
        torch.testing.assert_close(student.last, x_mixed)
        target = F.softmax(torch.where(m, t_a, t_b), 1)
        expected, conf_frac = loss_by_hand(student(x_mixed), target, torch.where(m, v_a, v_b))
    assert 0 < conf_frac < 1
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert stats["mask_mean"].item() == pytest.approx(m.float().mean().item())


def tiny_batches(n=2, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {"image": torch.randn(n, 3, h, w, generator=g), "valid": torch.ones(n, 1, h, w),
             "image_s": torch.randn(n, 3, h, w, generator=g), "valid_s": torch.ones(n, 1, h, w),
             "theta": torch.tensor([[1.0, 0.0, 0.1], [0.0, -1.0, 0.0]]).expand(n, 2, 3)}
    partner = {"image": torch.randn(n, 3, h, w, generator=g), "valid": torch.ones(n, 1, h, w)}
    return batch, partner


@pytest.mark.parametrize("name", sorted(regularizers.REGULARIZERS))
@pytest.mark.parametrize("kind", ["var", "logits_smoothl1"])
def test_every_registered_regularizer_runs(name, kind):
    cls = regularizers.get_regularizer_class(name)
    assert isinstance(cls.needs_partner, bool) and isinstance(cls.needs_views, bool)
    assert cls.default_weight > 0 and isinstance(cls.defaults, dict)
    reg = regularizers.build_regularizer(name, ConsistencyLoss(kind, conf_thresh=0.5), np.random.default_rng(0),
                                         dict(cls.defaults))
    student, teacher = TinyNet(), TinyNet()
    batch, partner = tiny_batches()
    loss, stats = reg(student, teacher, batch, partner if reg.needs_partner else None)
    assert loss.dim() == 0 and torch.isfinite(loss) and 0.0 <= float(stats["conf_frac"]) <= 1.0
    loss.backward()
    assert all(p.grad is not None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


REG_ARGS = {"aug": ["--aug-free-scale-rot", "--aug_offset_range", "8"],
            "ict": ["--ict_alpha", "0.2", "--ict-mix-confidences"],
            "vat": ["--no-adaptive-vat-radius", "--vat_radius", "0.5", "--vat-dir-from-student"],
            "cowmix": ["--cowmix-sigma-range", "3:6"]}


@pytest.mark.parametrize("reg", sorted(regularizers.REGULARIZERS))
def test_every_regularizer_trains_end_to_end(tmp_path, reg):
    out = tmp_path / "run"
    result = run([*TINY, "--iters", "2", "--reg", reg, *REG_ARGS.get(reg, []), "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["reg"] == reg and config["cons_weight"] == regularizers.REGULARIZERS[reg].default_weight
    assert config["cons_loss"] == ("kld" if reg == "vat" else "var")  # the authors' VAT runs used KL divergence
    final = json.loads((out / "final.json").read_text())
    assert final["iters"] == 2 and 0.0 <= final["miou"] <= 1.0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(m["cons_loss"]) for m in metrics)
    expected = {"aug": {"aug_free_scale_rot": True, "aug_offset_range": 8},
                "ict": {"ict_alpha": 0.2, "ict_mix_confidences": True},
                "vat": {"adaptive_vat_radius": False, "vat_radius": 0.5, "vat_dir_from_student": True},
                "cowmix": {"cowmix_sigma_range": "3:6"}}.get(reg, {})
    assert {k: config[k] for k in expected} == expected


def test_aug_with_the_teacher_unscaled_trains(tmp_path):
    out = tmp_path / "run"
    result = run([*TINY, "--iters", "2", "--reg", "aug", "--aug-teacher-unscaled", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["aug_teacher_unscaled"] is True


def test_vat_loss_default_gives_way_to_the_command_line():
    from train_seg_semisup import resolve_config

    given = {"dataset": "synthetic", "reg": "vat", "synthetic_n_train": 8}
    assert resolve_config(given)[0]["cons_loss"] == "kld"
    assert resolve_config({**given, "cons_loss": "var"})[0]["cons_loss"] == "var"
    assert resolve_config({**given, "reg": "cutmix"})[0]["cons_loss"] == "var"


def test_bad_sigma_range_is_one_line():
    result = run([*TINY, "--reg", "cowmix", "--cowmix-sigma-range", "0:4"])
    assert result.exit_code != 0 and "0 < a <= b" in result.output and "Traceback" not in result.output


def test_vat_direction_shows_no_torch_deprecation_warning():
    """torch.func.jvp loads torch's forward-mode decompositions, which call the deprecated torch.jit.script;
    VAT hides that one warning (a fresh process: the module loads once per process)."""
    import os
    import subprocess
    import sys

    code = ("import torch\nfrom regularizers.vat import adversarial_direction\n"
            "net = torch.nn.Conv2d(3, 4, 3, padding=1)\n"
            "adversarial_direction(net, torch.randn(2, 3, 8, 8), torch.ones(2, 1, 8, 8), 'var',"
            " torch.Generator().manual_seed(0))\n")
    proc = subprocess.run([sys.executable, "-W", "error::FutureWarning", "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
