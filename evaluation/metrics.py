"""Confusion matrix and set-level IoU (intersections and unions summed over the whole set).

The confusion matrix lives on the model's device and is accumulated with one ``bincount`` per batch.
"""
from __future__ import annotations

import torch


class ConfusionMatrix:
    """``matrix[t, p]`` counts pixels of true class t predicted as p; ``ignore_index`` pixels are skipped."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """pred, label: integer tensors of the same shape (e.g. (N, H, W))."""
        if pred.shape != label.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != label shape {tuple(label.shape)}")
        keep = label != self.ignore_index
        true, pred = label[keep].long(), pred[keep].long()
        if true.numel() and (true.min() < 0 or true.max() >= self.num_classes):
            bad = sorted(set(true[(true < 0) | (true >= self.num_classes)].unique().tolist()))
            raise ValueError(f"label values {bad} outside [0, {self.num_classes}) and != {self.ignore_index}")
        index = true * self.num_classes + pred
        self.matrix += torch.bincount(index, minlength=self.num_classes**2).view(self.num_classes, -1)

    def per_class_iou(self) -> list[float | None]:
        """IoU per class; None for a class absent from both labels and predictions."""
        return per_class_iou(self.matrix)

    def miou(self) -> float:
        return mean_iou(self.per_class_iou())


def per_class_iou(matrix: torch.Tensor) -> list[float | None]:
    m = matrix.double().cpu()
    intersection = m.diagonal()
    union = m.sum(0) + m.sum(1) - intersection
    return [None if u == 0 else float(i / u) for i, u in zip(intersection, union, strict=True)]


def mean_iou(ious: list[float | None]) -> float:
    """Mean over the classes that occur (in labels or predictions), as a fraction."""
    present = [v for v in ious if v is not None]
    return float(sum(present) / len(present)) if present else 0.0


def image_iou(pred: torch.Tensor, label: torch.Tensor, cls: int, ignore_index: int = 255) -> torch.Tensor:
    """IoU of class ``cls`` in each image, (N,) float; 1 where the class is absent from both (N, H, W) maps.

    The mean over images of ``image_iou(..., cls=1)`` is the Jaccard index the ISIC 2017 challenge reports
    for the lesion; the set-level IoU of ``ConfusionMatrix`` sums over all pixels instead.
    """
    keep = label != ignore_index
    p, t = (pred == cls) & keep, (label == cls) & keep
    intersection = (p & t).flatten(1).sum(1).double()
    union = (p | t).flatten(1).sum(1).double()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))
