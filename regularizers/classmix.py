"""ClassMix (Olsson et al. 2021): paste the pixels of half of the classes of image a onto image b.

Beyond the paper. The mask M is 1 where the teacher's arg-max prediction on x_a is one of
ceil(n/2) classes chosen at random (without replacement, from the loop's generator) among the n classes
it predicts on the valid pixels of x_a (the original ClassMix code's ``(n + n % 2) / 2``). Student sees
x_a·M + x_b·(1 − M); target = softmax of the teacher logits mixed with the same M (as CutMix); loss
mask = the mixed validity. Batches holding ``image_s`` (the student's version of the crops, see
``box_mixing.py``) give the student the mix of those.
"""
from __future__ import annotations

import numpy as np
import torch

from .losses import ConsistencyLoss


def choose_classes(present: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ceil(n/2) of the n classes in ``present``, without replacement."""
    return rng.choice(present, size=(len(present) + 1) // 2, replace=False)


def class_mix_masks(pred: torch.Tensor, valid: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(N, H, W) class predictions of x_a, (N, 1, H, W) validity → (N, 1, H, W) masks, 1 = from x_a."""
    n = pred.shape[0]
    pred_np, valid_np = pred.cpu().numpy(), valid[:, 0].cpu().numpy() > 0.5
    n_classes = int(pred_np.max()) + 1
    # present[i, c]: class c is predicted on a valid pixel of image i (on any pixel if none is valid)
    counted = valid_np | ~valid_np.any(axis=(1, 2), keepdims=True)
    per_image = np.arange(n)[:, None, None] * n_classes + pred_np
    present = np.bincount(per_image[counted], minlength=n * n_classes).reshape(n, n_classes) > 0
    chosen = np.zeros((n, n_classes), dtype=bool)
    for i in range(n):  # the present classes in increasing order, as np.unique gives them
        chosen[i, choose_classes(np.flatnonzero(present[i]), rng)] = True
    chosen = torch.from_numpy(chosen).to(pred.device)
    masks = chosen[torch.arange(n, device=pred.device)[:, None, None], pred]  # (N, H, W): chosen[i, pred[i]]
    return masks[:, None].to(valid.dtype)


class ClassMix:
    """Student sees mix_M(x_a onto x_b); target mix_M of the teacher logits, then softmax."""

    needs_partner = True
    needs_views = False
    default_weight = 1.0
    defaults: dict = {}

    def __init__(self, cons_loss: ConsistencyLoss, rng: np.random.Generator):
        self.cons_loss, self.rng = cons_loss, rng

    def __call__(self, student, teacher, batch, partner):
        x_a, x_b = batch["image"], partner["image"]
        with torch.no_grad():
            logits_a, logits_b = teacher(x_a), teacher(x_b)
            mask = class_mix_masks(logits_a.argmax(dim=1), batch["valid"], self.rng)  # (N, 1, H, W), 1 → from a
            target = self.cons_loss.target(torch.lerp(logits_b, logits_a, mask))
        x_mixed = torch.lerp(partner.get("image_s", x_b), batch.get("image_s", x_a), mask)
        valid_mixed = torch.lerp(partner["valid"], batch["valid"], mask)
        loss, stats = self.cons_loss(student(x_mixed), target, valid_mixed)
        stats["mask_mean"] = mask.mean()
        return loss, stats
