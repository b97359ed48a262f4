"""Evaluate a segmentation model on full images: the same code during and after training."""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from .metrics import ConfusionMatrix


@torch.no_grad()
def predict_logits(model: torch.nn.Module, image: torch.Tensor, hflip: bool = False) -> torch.Tensor:
    """(N, 3, H, W) normalised images → (N, C, H, W) logits; ``hflip`` averages with the mirrored image."""
    logits = model(image)
    if hflip:
        logits = logits + model(image.flip(-1)).flip(-1)
    return logits


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[dict], num_classes: int, ignore_index: int = 255,
             device: torch.device | str = "cpu", hflip: bool = False, on_prediction=None,
             postprocess=None) -> ConfusionMatrix:
    """Score ``model`` (put in eval mode here and restored after) on ``batches`` of full images.

    batches: dicts with ``image`` (N, 3, H, W) normalised float and ``label`` (N, H, W) int64.
    on_prediction(batch, pred): optional callback, e.g. to save prediction PNGs.
    postprocess(pred) -> pred: optional, applied to each (N, H, W) prediction before scoring (``fill_holes``).
    """
    was_training = model.training
    model.eval()
    confusion = ConfusionMatrix(num_classes, ignore_index, device)
    try:
        for batch in batches:
            image = batch["image"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            logits = predict_logits(model, image, hflip=hflip)
            if logits.shape[-2:] != label.shape[-2:]:
                logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
            pred = logits.argmax(dim=1)
            if postprocess is not None:
                pred = postprocess(pred)
            confusion.update(pred, label)
            if on_prediction is not None:
                on_prediction(batch, pred)
    finally:
        model.train(was_training)
    return confusion
