"""Interpolation consistency training, ICT (Verma et al. 2019; supplement D.1.2).

The student sees λ·x_a + (1 − λ)·x_b with λ ~ Beta(α, α) drawn per sample (α = 0.1: most λ lie close
to 0 or 1); the target is the λ-mix of the teacher's outputs on x_a and x_b — probabilities, or
logits for logit losses — and the loss mask is the λ-mix of the two validities. The
confidence is that of the mixed probabilities, whatever the loss compares; with ``mix_confidences``
it is the λ-mix of the two teacher confidences instead, as the authors' ICT script computed it (never
lower: max is convex). Batches holding ``image_s`` (the student's version of the crops, see
``box_mixing.py``) give the student the λ-mix of those.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .losses import ConsistencyLoss


def ict_lambdas(n: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) mixing weights λ ~ Beta(alpha, alpha)."""
    if alpha <= 0:
        raise ValueError(f"ICT alpha must be > 0, got {alpha}")
    return rng.beta(alpha, alpha, size=n)


def mix(a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """λ·a + (1 − λ)·b per sample; a, b: (N, ...), lam: (N,)."""
    lam = lam.view(-1, *[1] * (a.dim() - 1)).to(a.dtype)
    return lam * a + (1.0 - lam) * b


def loss_with_confidence_from(cons_loss: ConsistencyLoss, student_logits, target, loss_mask, prob, conf=None):
    """``cons_loss``, but with the confidence taken from probabilities ``prob`` (N, C, H, W), or given as
    ``conf`` (N, 1, H, W).

    For probability losses the target IS ``prob`` and, without ``conf``, this is ``cons_loss`` itself;
    logit losses would otherwise take the confidence from softmax(mixed logits).
    """
    if cons_loss.conf_thresh == 0 or (conf is None and not cons_loss.uses_logits):
        return cons_loss(student_logits, target, loss_mask)
    if conf is None:
        conf = prob.max(dim=1, keepdim=True).values
    plain = ConsistencyLoss(cons_loss.kind, conf_thresh=0.0)
    confident = (conf >= cons_loss.conf_thresh).to(loss_mask.dtype)  # (N, 1, H, W)
    conf_frac = confident.mean()
    if cons_loss.conf_per_pixel or cons_loss.kind == "pseudo_ce":  # pseudo-labels are masked per pixel
        loss, _ = plain(student_logits, target, loss_mask * confident)
    else:
        loss, _ = plain(student_logits, target, loss_mask)
        loss = loss * conf_frac
    return loss, {"conf_frac": conf_frac.detach()}


class ICT:
    """Student sees mix_λ(x_a, x_b); target mix_λ(g(x_a), g(x_b)); loss mask mix_λ(valid_a, valid_b)."""

    needs_partner = True
    needs_views = False
    default_weight = 0.01  # Pascal / Cityscapes (supplement D.4.1); ISIC (authors' scripts): 0.0003
    defaults: dict = {}

    def __init__(self, cons_loss: ConsistencyLoss, rng: np.random.Generator, ict_alpha: float = 0.1,
                 ict_mix_confidences: bool = False):
        if ict_alpha <= 0:
            raise ValueError(f"ICT alpha must be > 0, got {ict_alpha}")
        self.cons_loss, self.rng, self.alpha = cons_loss, rng, ict_alpha
        self.mix_confidences = ict_mix_confidences

    def __call__(self, student, teacher, batch, partner):
        x_a, x_b = batch["image"], partner["image"]
        lam = torch.from_numpy(ict_lambdas(x_a.shape[0], self.alpha, self.rng)).to(x_a.device)  # (N,)
        with torch.no_grad():
            logits_a, logits_b = teacher(x_a), teacher(x_b)
            prob_a, prob_b = F.softmax(logits_a, dim=1), F.softmax(logits_b, dim=1)
            prob = mix(prob_a, prob_b, lam)
            target = mix(logits_a, logits_b, lam) if self.cons_loss.uses_logits else prob
            conf = None
            if self.mix_confidences:
                conf = mix(prob_a.max(dim=1, keepdim=True).values, prob_b.max(dim=1, keepdim=True).values, lam)
        valid = mix(batch["valid"], partner["valid"], lam)
        student_logits = student(mix(batch.get("image_s", x_a), partner.get("image_s", x_b), lam))
        loss, stats = loss_with_confidence_from(self.cons_loss, student_logits, target, valid, prob, conf)
        stats["lambda_mean"] = lam.mean().detach()
        return loss, stats
