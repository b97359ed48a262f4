import math

import pytest
import torch

from regularizers.losses import CONS_LOSSES, ConsistencyLoss, pixel_loss


def test_var_loss_by_hand():
    # one pixel, two classes: student logits (0, 0) → p = (0.5, 0.5); teacher target (1, 0)
    student = torch.zeros(1, 2, 1, 1)
    target = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    assert pixel_loss("var", student, target).item() == pytest.approx(0.25 + 0.25)


def test_var_reduction_averages_over_all_pixels_and_scales_by_confident_fraction():
    # two pixels; both teacher-confident (prob 1.0); loss mask keeps only the first pixel
    student = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)  # pixel 0 → class 0, pixel 1 → class 1
    mask = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    loss, stats = ConsistencyLoss("var", conf_thresh=0.97)(student, target, mask)
    assert loss.item() == pytest.approx(0.5 / 2)  # divided by ALL pixels, not by the mask sum
    assert stats["conf_frac"].item() == pytest.approx(1.0)


def test_confidence_fraction_and_per_pixel():
    student = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[0.99, 0.6], [0.01, 0.4]]).reshape(1, 2, 1, 2)  # confident only at pixel 0
    mask = torch.ones(1, 1, 1, 2)
    per_px = pixel_loss("var", student, target)[0, 0]  # (0.49² + 0.49², 0.1² + 0.1²)
    frac_loss, stats = ConsistencyLoss("var", 0.97)(student, target, mask)
    assert stats["conf_frac"].item() == pytest.approx(0.5)
    assert frac_loss.item() == pytest.approx(per_px.mean().item() * 0.5)
    pix_loss, _ = ConsistencyLoss("var", 0.97, conf_per_pixel=True)(student, target, mask)
    assert pix_loss.item() == pytest.approx(per_px[0].item() / 2)
    off_loss, off_stats = ConsistencyLoss("var", 0.0)(student, target, mask)
    assert off_loss.item() == pytest.approx(per_px.mean().item()) and off_stats["conf_frac"].item() == 1.0


def test_other_losses_by_hand():
    s = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1)  # student probabilities (0.25, 0.75)
    t = torch.tensor([0.5, 0.5]).view(1, 2, 1, 1)
    bce = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75)) * 2
    assert pixel_loss("bce", s, t).item() == pytest.approx(bce, rel=1e-5)
    kld = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert pixel_loss("kld", s, t).item() == pytest.approx(kld, rel=1e-5)
    t_hard = torch.tensor([0.2, 0.8]).view(1, 2, 1, 1)
    assert pixel_loss("pseudo_ce", s, t_hard).item() == pytest.approx(-math.log(0.75), rel=1e-5)
    z_t = torch.tensor([1.0, -1.0]).view(1, 2, 1, 1)
    assert pixel_loss("logits_var", s, z_t).item() == pytest.approx((1 + (math.log(3) + 1) ** 2) / math.sqrt(2))
    sl1 = 0.5 * 1.0**2 + (math.log(3) + 1 - 0.5)
    assert pixel_loss("logits_smoothl1", s, z_t).item() == pytest.approx(sl1 / math.sqrt(2), rel=1e-5)


@pytest.mark.parametrize("kind", CONS_LOSSES)
def test_every_loss_is_zero_when_student_equals_teacher_and_has_gradients(kind):
    logits = torch.randn(2, 3, 4, 5) * 3
    cons = ConsistencyLoss(kind, conf_thresh=0.0)
    target = cons.target(logits)
    student = logits.clone().requires_grad_(True)
    loss, _ = cons(student, target, torch.ones(2, 1, 4, 5))
    if kind in ("var", "kld", "logits_var", "logits_smoothl1"):
        assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss2, _ = cons(student + torch.randn_like(student), target, torch.ones(2, 1, 4, 5))
    loss2.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()
    assert loss2.item() > loss.item() - 1e-6


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown consistency loss"):
        ConsistencyLoss("l3")


def test_pseudo_ce_is_masked_per_pixel():
    student = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[0.99, 0.6], [0.01, 0.4]]).reshape(1, 2, 1, 2)  # confident only at pixel 0
    loss, stats = ConsistencyLoss("pseudo_ce", 0.97)(student, target, torch.ones(1, 1, 1, 2))
    assert loss.item() == pytest.approx(math.log(2) / 2)  # only pixel 0 counts, divided by both pixels
    assert stats["conf_frac"].item() == pytest.approx(0.5)
