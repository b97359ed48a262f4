"""Consistency losses and confidence weighting (supplement D.4.4–D.4.5).

Self-contained (torch only): copy this file into your project.

A loss compares student logits with a teacher *target*. Probability losses (``var``, ``bce``, ``kld``,
``pseudo_ce``) take teacher probabilities as target; logit losses (``logits_var``,
``logits_smoothl1``) take teacher logits. Regularizers that mix teacher outputs (ICT) mix targets,
so ``ConsistencyLoss.target`` turns teacher logits into the target space first.

Reduction (the authors'): per-pixel loss summed over classes × loss mask, averaged over ALL N·H·W
pixels (not divided by the mask sum), then × the fraction of pixels whose teacher confidence
(max class probability) ≥ ``conf_thresh`` — or, with ``conf_per_pixel``, the per-pixel confidence
mask multiplies the per-pixel loss instead (always for ``pseudo_ce``, the pseudo-label cross-entropy,
which is masked per pixel like FixMatch-style pseudo-labels). ``conf_thresh=0`` disables confidence weighting.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PROB_LOSSES = ("var", "bce", "kld", "pseudo_ce")
LOGIT_LOSSES = ("logits_var", "logits_smoothl1")
CONS_LOSSES = PROB_LOSSES + LOGIT_LOSSES


def pixel_loss(kind: str, student_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel loss (N, H, W), summed over classes.

    student_logits: (N, C, H, W);  target: (N, C, H, W) teacher probabilities or logits (see module doc).
    """
    n_classes = student_logits.shape[1]
    if kind == "var":  # squared error of probabilities
        return (F.softmax(student_logits, dim=1) - target).pow(2).sum(dim=1)
    if kind == "bce":  # binary cross-entropy of each class probability
        return F.binary_cross_entropy(F.softmax(student_logits, dim=1).clamp(1e-7, 1 - 1e-7), target,
                                      reduction="none").sum(dim=1)
    if kind == "kld":  # KL(teacher || student)
        log_p = F.log_softmax(student_logits, dim=1)
        return (torch.xlogy(target, target) - target * log_p).sum(dim=1)
    if kind == "pseudo_ce":  # cross-entropy to the teacher's arg-max
        return F.cross_entropy(student_logits, target.argmax(dim=1), reduction="none")
    if kind == "logits_var":
        return (student_logits - target).pow(2).sum(dim=1) / math.sqrt(n_classes)
    if kind == "logits_smoothl1":
        return F.smooth_l1_loss(student_logits, target, reduction="none").sum(dim=1) / math.sqrt(n_classes)
    raise ValueError(f"unknown consistency loss {kind!r}; choose one of: {', '.join(CONS_LOSSES)}")


def confidence(target: torch.Tensor, target_is_logits: bool) -> torch.Tensor:
    """(N, C, H, W) teacher target → (N, H, W) max class probability."""
    prob = F.softmax(target, dim=1) if target_is_logits else target
    return prob.max(dim=1).values


class ConsistencyLoss:
    """``loss, stats = cons_loss(student_logits, target, loss_mask)``.

    student_logits, target: (N, C, H, W);  loss_mask: (N, 1, H, W) in [0, 1] (validity × mix mask).
    stats: ``conf_frac``, the fraction of all N·H·W pixels with confidence ≥ ``conf_thresh``.
    """

    def __init__(self, kind: str = "var", conf_thresh: float = 0.97, conf_per_pixel: bool = False):
        if kind not in CONS_LOSSES:
            raise ValueError(f"unknown consistency loss {kind!r}; choose one of: {', '.join(CONS_LOSSES)}")
        if not 0.0 <= conf_thresh <= 1.0:
            raise ValueError(f"confidence threshold must be in [0, 1], got {conf_thresh}")
        self.kind = kind
        self.conf_thresh = conf_thresh
        self.conf_per_pixel = conf_per_pixel

    @property
    def uses_logits(self) -> bool:
        return self.kind in LOGIT_LOSSES

    def target(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """Teacher logits → the space this loss compares in (probabilities or logits)."""
        return teacher_logits if self.uses_logits else F.softmax(teacher_logits, dim=1)

    def __call__(self, student_logits: torch.Tensor, target: torch.Tensor, loss_mask: torch.Tensor):
        target = target.detach()
        per_pixel = pixel_loss(self.kind, student_logits, target) * loss_mask[:, 0]  # (N, H, W)
        if self.conf_thresh > 0:
            confident = (confidence(target, self.uses_logits) >= self.conf_thresh).float()  # (N, H, W)
            conf_frac = confident.mean()
            if self.conf_per_pixel or self.kind == "pseudo_ce":  # pseudo-labels are masked per pixel
                loss = (per_pixel * confident).mean()
            else:
                loss = per_pixel.mean() * conf_frac
        else:
            conf_frac = torch.ones((), device=per_pixel.device)
            loss = per_pixel.mean()
        return loss, {"conf_frac": conf_frac.detach()}
