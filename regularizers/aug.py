"""Standard-augmentation consistency (supplement D.1.1).

The data pipeline makes two OpenCV views of each unlabelled image — the teacher's and the student's,
whose crops are offset (and flipped, possibly scaled and rotated) differently — and ``theta``, the
``F.affine_grid`` matrix that brings teacher-view maps into the student view's frame. The teacher
predicts on its view; that prediction is warped with the same ``theta`` (a(g(x)))
and compared with the student's prediction on its view (f(a(x))).

Paired batch: ``image``/``valid`` (teacher view), ``image_s``/``valid_s`` (student view), ``theta``
(N, 2, 3), all as produced by ``datapipe.stream_loader(..., paired=True)``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .losses import ConsistencyLoss


def warp_to_student(maps: torch.Tensor, theta: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """Resample teacher-view maps (N, C, h, w) into the student frame: (N, C, *out_hw).

    theta: (N, 2, 3) affine_grid matrices (output → input normalised coordinates, align_corners=False).
    Bilinear; what falls outside the teacher view is 0.
    """
    grid = F.affine_grid(theta.to(maps.dtype), [maps.shape[0], maps.shape[1], *out_hw], align_corners=False)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def warped_validity(valid: torch.Tensor, theta: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """(N, 1, h, w) teacher-view validity → (N, 1, *out_hw) in the student frame, 1 only where the whole
    bilinear footprint of the warped prediction lies on valid teacher pixels (elsewhere the warped
    target would blend in padding)."""
    return (warp_to_student(valid, theta, out_hw) > 0.999).to(valid.dtype)


class AugConsistency:
    """Student sees the student view a(x); target = the teacher's prediction on its view, warped by theta.

    Loss mask: warped teacher validity × student validity. The target is warped in the loss's target
    space (probabilities, or logits for logit losses), like ICT mixes it.
    """

    needs_partner = False
    needs_views = True  # the script asks the data pipeline for paired views
    default_weight = 0.003  # Pascal / Cityscapes (supplement D.4.1); ISIC: 0.1
    defaults: dict = {}

    def __init__(self, cons_loss: ConsistencyLoss, rng: np.random.Generator):
        self.cons_loss, self.rng = cons_loss, rng

    def __call__(self, student, teacher, batch, partner=None):
        student_logits = student(batch["image_s"])  # (N, C, H_s, W_s): networks predict at input size
        out_hw = tuple(student_logits.shape[-2:])
        with torch.no_grad():
            target = warp_to_student(self.cons_loss.target(teacher(batch["image"])), batch["theta"], out_hw)
            loss_mask = warped_validity(batch["valid"], batch["theta"], out_hw) * batch["valid_s"]
        loss, stats = self.cons_loss(student_logits, target, loss_mask)
        stats["mask_mean"] = loss_mask.mean()
        return loss, stats
