"""Post-processing of predicted label maps before scoring (generic; a dataset recipe may switch it on).

``fill_holes``: binary hole filling of the foreground (class 1) of two-class predictions, as the ISIC
experiments of the paper did before scoring (the authors' ``--bin_fill_holes``).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import binary_fill_holes


def fill_holes(pred: torch.Tensor) -> torch.Tensor:
    """pred: (N, H, W) integer labels in {0, 1} → the same with background holes inside the foreground
    set to 1 (a hole = background not connected to the image border, 4-connectivity of the background)."""
    if pred.numel() and int(pred.max()) > 1:
        raise ValueError("fill_holes needs two-class predictions (labels 0 and 1)")
    filled = np.stack([binary_fill_holes(p) for p in pred.cpu().numpy().astype(bool)]) if len(pred) else None
    return pred if filled is None else torch.from_numpy(filled).to(pred.device, pred.dtype)
