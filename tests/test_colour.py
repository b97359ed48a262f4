"""Strong colour augmentation of the student's unlabelled view (--aug-strong-colour): the jitter's draws and
operations, the views the loaders make with it, what each regularizer feeds its student and teacher, and
the training script's options."""
import json

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from test_regularizers import CONF, ContextTeacher, FixedMasks, Recorder, mixing_inputs, trained_tiny_net
from test_train import TINY, run

import datapipe
from datapipe.colour import OPERATIONS, ColourJitter, apply_colour
from datapipe.loaders import AugmentedViews, PairedViews, stream_loader
from datapipe.transforms import AugParams
from regularizers.box_mixing import CutMix, Cutout
from regularizers.classmix import ClassMix, class_mix_masks
from regularizers.ict import ICT
from regularizers.losses import ConsistencyLoss, pixel_loss
from regularizers.vat import (
    VAT,
    adversarial_direction,
    finite_difference_direction,
    image_gradient_magnitude,
    per_image_norm,
    vat_xi,
)


def test_draws_factors_in_range_in_a_random_order_with_the_given_probabilities():
    jitter = ColourJitter(brightness=0.4, contrast=0.2, saturation=1.5, hue=0.1, prob=0.8, greyscale_prob=0.2)
    rng = np.random.default_rng(0)
    draws = [jitter.draw(rng) for _ in range(4000)]
    n_jitter = sum(bool(steps) for steps, _ in draws)
    n_grey = sum(grey for _, grey in draws)
    # two-sided binomial tests at 1e-4: a wrong probability (e.g. 1 − p) fails
    assert scipy.stats.binomtest(n_jitter, 4000, 0.8).pvalue > 1e-4
    assert scipy.stats.binomtest(n_grey, 4000, 0.2).pvalue > 1e-4
    ranges = {"brightness": (0.6, 1.4), "contrast": (0.8, 1.2), "saturation": (0.0, 2.5), "hue": (-0.1, 0.1)}
    orders = set()
    for steps, _ in draws:
        if steps:
            assert sorted(name for name, _ in steps) == sorted(OPERATIONS)
            orders.add(tuple(name for name, _ in steps))
            for name, factor in steps:
                assert ranges[name][0] <= factor <= ranges[name][1]
    assert len(orders) == 24  # every order of the four operations occurs
    hues = np.array([dict(steps)["hue"] for steps, _ in draws if steps])
    assert hues.min() < -0.09 and hues.max() > 0.09  # the whole range is used
    # an operation of strength 0 is skipped, as in torchvision's ColorJitter
    steps, _ = ColourJitter(hue=0.0, prob=1.0).draw(rng)
    assert sorted(name for name, _ in steps) == ["brightness", "contrast", "saturation"]


def test_operations_by_hand():
    image = np.array([[[100, 20, 200], [255, 0, 0]]], np.uint8)  # (1, 2, 3)
    brighter = apply_colour(image, [("brightness", 2.0)], False)
    np.testing.assert_array_equal(brighter, [[[200, 40, 255], [255, 0, 0]]])  # clipped at 255
    grey_value = (0.299 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2])
    no_contrast = apply_colour(image, [("contrast", 0.0)], False)  # every pixel: the image's mean grey
    np.testing.assert_allclose(no_contrast, np.full_like(image, grey_value.mean()), atol=1)
    no_saturation = apply_colour(image, [("saturation", 0.0)], False)  # each pixel: its own grey
    np.testing.assert_allclose(no_saturation, np.repeat(grey_value[..., None], 3, -1), atol=1)
    half_turn = apply_colour(image, [("hue", 0.5)], False)
    np.testing.assert_array_equal(half_turn[0, 1], [0, 255, 255])  # red → cyan
    grey = apply_colour(image, [], True)
    assert (grey == grey[..., :1]).all()
    np.testing.assert_allclose(grey[..., 0], grey_value, atol=1)
    # the order matters, and is kept: contrast to 0 then brightness ≠ brightness then contrast to 0
    a = apply_colour(image, [("brightness", 2.0), ("contrast", 0.0)], False)
    b = apply_colour(image, [("contrast", 0.0), ("brightness", 2.0)], False)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(apply_colour(image, [], False), image)


def test_hue_shift_is_torchvisions():
    image = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    image[:4] = np.array([[255, 0, 0], [0, 0, 0], [255, 255, 255], [10, 200, 30]], np.uint8)[:, None]  # row by row
    image[4:8, :, :] = 128  # grey: no hue
    x = torch.from_numpy(image).permute(2, 0, 1)
    for factor in (-0.5, -0.1, 0.03, 0.25, 0.5):
        ours = apply_colour(image, [("hue", factor)], False).astype(int)
        theirs = TF.adjust_hue(x, factor).permute(1, 2, 0).numpy().astype(int)
        assert np.abs(ours - theirs).max() <= 1 and (ours != theirs).mean() < 1e-3, factor


def test_seeded_and_validated():
    image = np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    jitter = ColourJitter(prob=1.0)
    first = jitter(image, np.random.default_rng(5))
    np.testing.assert_array_equal(first, jitter(image, np.random.default_rng(5)))
    assert not np.array_equal(first, image)
    for bad in ({"brightness": -0.1}, {"hue": 0.6}, {"prob": 1.5}, {"greyscale_prob": -0.2}):
        with pytest.raises(ValueError):
            ColourJitter(**bad)


NO_CHANGE = ColourJitter(prob=0.0, greyscale_prob=0.0)
ALWAYS_GREY = ColourJitter(prob=1.0, greyscale_prob=1.0)


@pytest.mark.parametrize("reflect", [False, True])
def test_single_views_colour_only_the_students_copy(reflect):
    dataset = datapipe.build_dataset("synthetic", n_train=3).train
    params = AugParams(crop_size=(40, 40), scale_range=(0.5, 0.8), rot_mag=20, hflip=True, reflect_border=reflect)
    fill = (120.0, 110.0, 100.0)
    plain = AugmentedViews(dataset, params, seed=2, stream=1, with_label=False, fill=fill)
    unchanged = AugmentedViews(dataset, params, seed=2, stream=1, with_label=False, fill=fill, colour=NO_CHANGE)
    grey = AugmentedViews(dataset, params, seed=2, stream=1, with_label=False, fill=fill, colour=ALWAYS_GREY)
    for draw in range(3):
        a, b, c = plain[(draw, draw)], unchanged[(draw, draw)], grey[(draw, draw)]
        assert "image_s" not in a
        for key in ("image", "valid", "matrix"):  # the teacher's view and the geometry do not change
            torch.testing.assert_close(b[key], a[key])
            torch.testing.assert_close(c[key], a[key])
        torch.testing.assert_close(b["image_s"], a["image"])
        valid = c["valid"][0].bool()
        assert (~valid).any()  # the crop reaches outside the scaled, rotated image
        student = c["image_s"]
        grey_pixels = valid | reflect  # the image's pixels, and with a reflected border its mirrored ones too
        assert (student[0] == student[1])[grey_pixels].all() and (student[1] == student[2])[grey_pixels].all()
        assert not (a["image"][0] == a["image"][1])[grey_pixels].all()
        if not reflect:  # the padding keeps its values: the fill colour away from the image
            torch.testing.assert_close(student[:, ~valid], a["image"][:, ~valid])
            assert (student[:, 0, 0] == torch.tensor([120, 110, 100], dtype=torch.uint8)).all()
            assert not valid[0, 0]


def test_paired_views_colour_the_student_view_only():
    dataset = datapipe.build_dataset("synthetic", n_train=3).train
    params = AugParams(crop_size=(40, 40), scale_range=(0.7, 1.2), hflip=True)
    plain = PairedViews(dataset, params, seed=4, stream=1, offset_range=8)
    unchanged = PairedViews(dataset, params, seed=4, stream=1, offset_range=8, colour=NO_CHANGE)
    grey = PairedViews(dataset, params, seed=4, stream=1, offset_range=8, colour=ALWAYS_GREY)
    a, b, c = plain[(1, 7)], unchanged[(1, 7)], grey[(1, 7)]
    assert a.keys() == b.keys() == c.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key])
        if key != "image_s":
            torch.testing.assert_close(c[key], a[key])
    assert (c["image_s"][0] == c["image_s"][2]).all() and not (a["image_s"][0] == a["image_s"][2]).all()


def test_stream_batches_normalise_the_students_copy():
    dataset = datapipe.build_dataset("synthetic", n_train=6).train
    params = AugParams(crop_size=(16, 16))
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    batch = next(stream_loader(dataset, params, 3, seed=0, stream=1, with_label=False, mean=mean, std=std,
                               colour=NO_CHANGE))
    assert batch["image_s"].dtype == torch.float32
    torch.testing.assert_close(batch["image_s"], batch["image"])


def with_student_copy(batch, seed):
    """``batch`` plus ``image_s``: a different image, as a colour-augmented copy would be."""
    return {**batch, "image_s": torch.randn(batch["image"].shape, generator=torch.Generator().manual_seed(seed))}


class RecordingTeacher(ContextTeacher):
    """ContextTeacher that keeps every input it is given."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return super().forward(x)


def test_mixing_regularizers_give_the_student_the_students_copies_and_the_teacher_the_clean_images():
    x_a, x_b, v_a, v_b, masks = mixing_inputs()
    m = torch.from_numpy(masks).bool()
    batch = with_student_copy({"image": x_a, "valid": v_a}, 1)
    partner = with_student_copy({"image": x_b, "valid": v_b}, 2)
    s_a, s_b = batch["image_s"], partner["image_s"]
    loss_fn = ConsistencyLoss("var", conf_thresh=CONF)

    student, teacher = Recorder(seed=1), RecordingTeacher()
    CutMix(loss_fn, np.random.default_rng(0), FixedMasks(masks))(student, teacher, batch, partner)
    torch.testing.assert_close(student.last, torch.where(m, s_b, s_a))
    assert len(teacher.inputs) == 2  # the teacher sees the clean images
    torch.testing.assert_close(teacher.inputs[0], x_a)
    torch.testing.assert_close(teacher.inputs[1], x_b)
    teacher = ContextTeacher()

    student = Recorder(seed=1)
    loss, _ = Cutout(loss_fn, np.random.default_rng(0), FixedMasks(masks))(student, teacher, batch)
    torch.testing.assert_close(student.last, torch.where(m, s_a, torch.zeros(())))
    with torch.no_grad():  # the target is the teacher's on the clean image
        target = F.softmax(teacher(x_a), 1)
        assert not torch.allclose(target, F.softmax(teacher(s_a), 1))
        per_pixel = (F.softmax(student(student.last), 1) - target).pow(2).sum(1) * (m * v_a)[:, 0]
        expected = per_pixel.mean() * (target.max(1).values >= CONF).float().mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)

    student = Recorder(seed=1)
    ClassMix(loss_fn, np.random.default_rng(4))(student, teacher, batch, partner)
    with torch.no_grad():
        cm = class_mix_masks(teacher(x_a).argmax(1), v_a, np.random.default_rng(4)).bool()  # from the clean x_a
    torch.testing.assert_close(student.last, torch.where(cm, s_a, s_b))

    class Lambdas:
        def beta(self, a, b, size):
            return np.array([0.25, 0.9])[:size]

    student, recorder_teacher = Recorder(seed=1), Recorder(seed=5)
    ICT(loss_fn, Lambdas())(student, recorder_teacher, batch, partner)
    lam = torch.tensor([0.25, 0.9]).view(2, 1, 1, 1)
    torch.testing.assert_close(student.last, lam * s_a + (1 - lam) * s_b)
    torch.testing.assert_close(recorder_teacher.last, x_b)  # the teacher ran on x_a, then on x_b: clean images


def test_vat_perturbs_the_students_copy_against_the_clean_prediction():
    net = trained_tiny_net().double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, generator=g)
    x_s = x + 0.3 * torch.randn(x.shape, dtype=torch.float64, generator=g)
    valid = torch.ones(2, 1, 12, 12, dtype=torch.float64)
    direction = adversarial_direction(net.eval(), x_s, valid, "kld", torch.Generator().manual_seed(7), x_ref=x)
    # the definition: ∇_r D(f(x), f(x_s + r)) at r = ξ·d, by autograd in float64
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    r = (vat_xi(12, 12) * d / per_image_norm(d)).requires_grad_(True)
    with torch.no_grad():
        target = F.softmax(net(x), 1)
    (grad,) = torch.autograd.grad(pixel_loss("kld", net(x_s + r), target).mean(), r)
    cosine = F.cosine_similarity(direction.flatten(1), grad.flatten(1))
    assert (cosine > 0.999).all(), cosine
    literal = finite_difference_direction(net, x_s, valid, "kld", torch.Generator().manual_seed(7), x_ref=x)
    assert (F.cosine_similarity(direction.flatten(1), literal.flatten(1)) > 0.999).all()
    # without the reference the direction differs (it is the curvature at x_s, not the pull towards f(x))
    own = adversarial_direction(net, x_s, valid, "kld", torch.Generator().manual_seed(7))
    assert (F.cosine_similarity(direction.flatten(1), own.flatten(1)) < 0.99).all()
    # an image whose student copy is the clean image gets exactly the direction it has without a copy
    x_s_mixed = torch.cat([x[:1], x_s[1:]])
    mixed = adversarial_direction(net, x_s_mixed, valid, "kld", torch.Generator().manual_seed(7), x_ref=x)
    plain = adversarial_direction(net, x, valid, "kld", torch.Generator().manual_seed(7))
    torch.testing.assert_close(mixed[:1], plain[:1], rtol=1e-6, atol=1e-9)


def test_vat_student_input_and_target():
    student, teacher = Recorder(seed=1), Recorder(seed=2)
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(2, 3, 12, 12, generator=g), "valid": torch.ones(2, 1, 12, 12)}
    batch["image_s"] = batch["image"] * 0.5 + 0.2
    reg = VAT(ConsistencyLoss("kld", conf_thresh=0.0), np.random.default_rng(0), vat_radius=0.5)
    reg(student, teacher, batch)
    r_adv = student.last - batch["image_s"]
    expected_norm = 0.5 * 0.5 * torch.tensor([1.0, 1.0])  # ε from the student's copy (half the image's gradient)
    torch.testing.assert_close(per_image_norm(r_adv).view(2),
                               expected_norm * image_gradient_magnitude(batch["image"]).view(2), rtol=1e-4, atol=0)
    torch.testing.assert_close(teacher.last, batch["image"])  # the target: the teacher on the clean image


@pytest.mark.parametrize("reg, extra", [("vat", []), ("aug", []), ("cowmix", ["--mix-partner", "batch"]),
                                        ("ict", ["--num-workers", "1"])])
def test_every_kind_of_regularizer_trains_with_colour(tmp_path, reg, extra):
    out = tmp_path / "run"
    result = run([*TINY, "--iters", "2", "--reg", reg, "--aug-strong-colour", *extra, "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    final = json.loads((out / "final.json").read_text())
    assert final["iters"] == 2 and 0.0 <= final["miou"] <= 1.0


def test_training_options(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--iters", "2", "--reg", "cutmix", "--aug-strong-colour", "--aug_colour_hue", "0.2",
            "--aug-colour-greyscale-prob", "0.5", "--out-dir", str(out)]
    result = run(args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["aug_strong_colour"] is True and config["aug_colour_hue"] == 0.2
    assert config["aug_colour_greyscale_prob"] == 0.5 and config["aug_colour_brightness"] == 0.4
    for bad, words in ((["--reg", "none", "--aug-strong-colour"], "--reg none"),
                       (["--reg", "cutmix", "--aug-colour-prob", "0.5"], "add --aug-strong-colour"),
                       (["--reg", "cutmix", "--aug-strong-colour", "--aug-colour-hue", "0.7"], "0.7")):
        result = run([*TINY, *bad, "--out-dir", str(tmp_path / "bad")])
        assert result.exit_code != 0 and words in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("kind", ["var", "kld", "bce"])
def test_vat_unchanged_images_keep_their_direction_in_float32(kind):
    """An image the jitter left unchanged gets the direction it has without colour augmentation, also in
    float32, where the gradient of D at its own prediction is rounding noise larger than the ξ term."""
    net = trained_tiny_net().eval()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 12, 12, generator=g)
    x_s = torch.cat([x[:1], x[1:] + 0.3 * torch.randn(1, 3, 12, 12, generator=g)])  # image 0 unchanged
    valid = torch.ones(2, 1, 12, 12)
    mixed = adversarial_direction(net, x_s, valid, kind, torch.Generator().manual_seed(7), x_ref=x)
    plain = adversarial_direction(net, x, valid, kind, torch.Generator().manual_seed(7))
    torch.testing.assert_close(mixed[:1], plain[:1], rtol=1e-4, atol=1e-6)
    towards = adversarial_direction(net, x_s, valid, kind, torch.Generator().manual_seed(7), x_ref=x_s)
    assert F.cosine_similarity(mixed[1].flatten(), towards[1].flatten(), dim=0) < 0.99  # image 1: pulled to f(x)
