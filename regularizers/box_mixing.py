"""Cutout and CutMix consistency, the paper's strong perturbations.

Both are plug-ins with the interface every regularizer here follows:

    loss, stats = reg(student, teacher, batch, partner)

batch, partner: unlabelled batches ``{"image": (N, 3, H, W) normalised float, "valid": (N, 1, H, W)}``
(``partner`` is a second, independent batch, given when ``reg.needs_partner``; ``reg.needs_views``
asks for paired teacher/student views instead, see ``aug.py``). A batch may also hold ``image_s``, the
student's version of the same crops (e.g. colour-augmented): the student then sees ``image_s`` where it
would see ``image``, and the teacher keeps ``image``. ``loss`` is the
unweighted consistency loss (the training loop multiplies by the consistency weight); ``stats`` holds
detached scalars for logging. The teacher runs under ``no_grad`` in whatever mode the loop set.
"""
from __future__ import annotations

import numpy as np
import torch

from .losses import ConsistencyLoss
from .masks import BoxMaskGenerator


def box_mask_generator(mask_prop_range="0.5", boxmask_n_boxes: int = 1, boxmask_fixed_aspect_ratio: bool = False,
                       boxmask_by_size: bool = False, boxmask_outside_bounds: bool = False,
                       boxmask_invert: bool = True) -> BoxMaskGenerator:
    """A ``BoxMaskGenerator`` from the training script's option names."""
    return BoxMaskGenerator(mask_prop_range, n_boxes=boxmask_n_boxes,
                            random_aspect_ratio=not boxmask_fixed_aspect_ratio, prop_by_area=not boxmask_by_size,
                            within_bounds=not boxmask_outside_bounds, invert=boxmask_invert)


def torch_masks(generator, n: int, like: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(n, 1, H, W) masks from ``generator`` on the device and dtype of ``like`` (N, C, H, W)."""
    masks = generator.generate(n, tuple(like.shape[-2:]), rng)
    return torch.from_numpy(masks).to(device=like.device, dtype=like.dtype)


class Cutout:
    """Student sees x·M, the teacher sees x; loss where M = 1 (and the pixel is valid).

    M: one box, area ~ U(0, 1) by default (the authors' run scripts); 0 after normalisation is the
    dataset mean, so the cut region becomes mean-grey.
    """

    needs_partner = False
    needs_views = False
    default_weight = 1.0
    defaults = {"mask_prop_range": "0:1"}
    mask_generator_factory = staticmethod(box_mask_generator)

    def __init__(self, cons_loss: ConsistencyLoss, rng: np.random.Generator, mask_generator):
        self.cons_loss, self.rng, self.mask_generator = cons_loss, rng, mask_generator

    def __call__(self, student, teacher, batch, partner=None):
        x, valid = batch["image"], batch["valid"]
        mask = torch_masks(self.mask_generator, x.shape[0], x, self.rng)  # (N, 1, H, W)
        with torch.no_grad():
            target = self.cons_loss.target(teacher(x))
        loss, stats = self.cons_loss(student(batch.get("image_s", x) * mask), target, mask * valid)
        stats["mask_mean"] = mask.mean()
        return loss, stats


class CutMix:
    """Student sees x_a·(1 − M) + x_b·M; target = softmax of the teacher logits mixed with the same M.

    M: one box covering half of the area, random aspect ratio and position; for full-size
    Cityscapes crops the supplement (D.3) uses three boxes of 1/6 area each, combined by XOR.
    """

    needs_partner = True
    needs_views = False
    default_weight = 1.0
    defaults = {"mask_prop_range": "0.5"}
    mask_generator_factory = staticmethod(box_mask_generator)

    def __init__(self, cons_loss: ConsistencyLoss, rng: np.random.Generator, mask_generator):
        self.cons_loss, self.rng, self.mask_generator = cons_loss, rng, mask_generator

    def __call__(self, student, teacher, batch, partner):
        x_a, x_b = batch["image"], partner["image"]
        mask = torch_masks(self.mask_generator, x_a.shape[0], x_a, self.rng)  # (N, 1, H, W), 1 → from b
        with torch.no_grad():
            logits_mixed = torch.lerp(teacher(x_a), teacher(x_b), mask)
            target = self.cons_loss.target(logits_mixed)
        x_mixed = torch.lerp(batch.get("image_s", x_a), partner.get("image_s", x_b), mask)
        valid_mixed = torch.lerp(batch["valid"], partner["valid"], mask)
        loss, stats = self.cons_loss(student(x_mixed), target, valid_mixed)
        stats["mask_mean"] = mask.mean()
        return loss, stats
