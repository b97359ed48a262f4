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


def pad_to_multiple(image: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[slice, slice]]:
    """Pad (N, 3, H, W) normalised images centrally with 0 (the mean colour) so that H and W are
    multiples of ``multiple``; returns the padded images and the rows and columns of the originals."""
    h, w = image.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    top, left = pad_h // 2, pad_w // 2
    if pad_h or pad_w:
        image = F.pad(image, (left, pad_w - left, top, pad_h - top))
    return image, (slice(top, top + h), slice(left, left + w))


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[dict], num_classes: int, ignore_index: int = 255,
             device: torch.device | str = "cpu", hflip: bool = False, on_prediction=None,
             postprocess=None, postprocess_padded: bool = False) -> ConfusionMatrix:
    """Score ``model`` (put in eval mode here and restored after) on ``batches`` of full images.

    batches: dicts with ``image`` (N, 3, H, W) normalised float and ``label`` (N, H, W) int64.
    A model with an ``input_multiple`` attribute (the U-Nets: 32) gets its images padded centrally to
    multiples of it, as in the authors' evaluation, and the logits are cropped back.
    on_prediction(batch, pred): optional callback, e.g. to save prediction PNGs.
    postprocess(pred) -> pred: optional, applied to each (N, H, W) prediction before scoring (``fill_holes``);
    a batch with ``crop`` (N, 4: top, left, height, width of each image in a padded batch) has it applied to
    each image's own pixels, so padding cannot change it. ``postprocess_padded``: apply it to the prediction
    of the whole padded input instead, then crop (the authors' ISIC evaluation: hole filling on the padded
    prediction, where padding predicted as foreground can enclose background that touches an image's edge).
    """
    was_training = model.training
    model.eval()
    confusion = ConfusionMatrix(num_classes, ignore_index, device)
    try:
        for batch in batches:
            image = batch["image"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            image, (rows, cols) = pad_to_multiple(image, getattr(model, "input_multiple", 1))
            full = predict_logits(model, image, hflip=hflip)
            logits = full[..., rows, cols]
            if logits.shape[-2:] != label.shape[-2:]:
                logits = F.interpolate(logits, size=label.shape[-2:], mode="bilinear", align_corners=False)
            pred = logits.argmax(dim=1)
            if postprocess is not None and postprocess_padded:  # on the whole padded prediction, then cropped
                if full.shape[-2:] != image.shape[-2:]:
                    raise ValueError("postprocess_padded needs logits at the input's size")
                pred = postprocess(full.argmax(dim=1))[..., rows, cols]
            elif postprocess is not None and "crop" in batch:  # a padded batch: each image on its own pixels
                for i, (top, left, h, w) in enumerate(batch["crop"].tolist()):
                    rows, cols = slice(top, top + h), slice(left, left + w)
                    pred[i, rows, cols] = postprocess(pred[i:i + 1, rows, cols])[0]
            elif postprocess is not None:
                pred = postprocess(pred)
            confusion.update(pred, label)
            if on_prediction is not None:
                on_prediction(batch, pred)
    finally:
        model.train(was_training)
    return confusion
