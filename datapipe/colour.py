"""Strong colour augmentation of the student's unlabelled view (beyond the BMVC paper).

The authors' later release added it to every regularizer (``--aug_strong_colour``): the student's view of
an unlabelled image is colour-augmented, the teacher's is not. The augmentation is MoCo v2's (Chen et al.
2020; the authors credit MoCo): with probability ``prob`` a colour jitter — brightness, contrast,
saturation and hue factors drawn uniformly from [max(0, 1 − b), 1 + b], [max(0, 1 − c), 1 + c],
[max(0, 1 − s), 1 + s] and [−h, h], applied in a random order, as torchvision's ``ColorJitter`` does —
then greyscale with probability ``greyscale_prob``. The image operations are torchvision's (the hue shift:
the same operation through OpenCV's HSV conversion, about 9× faster and within one grey level of
torchvision's; ``benchmarks/bench_colour.py``); the draws come from the view's own numpy generator, so a
seed fixes them whatever the number of loader workers.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torchvision.transforms.functional as TF

OPERATIONS = ("brightness", "contrast", "saturation", "hue")


@dataclass(frozen=True)
class ColourJitter:
    """MoCo v2's colour augmentation with the authors' defaults (``--aug-colour-*`` options)."""

    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    prob: float = 0.8  # probability of the jitter
    greyscale_prob: float = 0.2

    def __post_init__(self):
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"colour {name} strength must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"colour hue strength must be in [0, 0.5], got {self.hue}")
        for name in ("prob", "greyscale_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"colour {name} must be in [0, 1], got {getattr(self, name)}")

    def ranges(self) -> dict[str, tuple[float, float]]:
        return {"brightness": (max(0.0, 1 - self.brightness), 1 + self.brightness),
                "contrast": (max(0.0, 1 - self.contrast), 1 + self.contrast),
                "saturation": (max(0.0, 1 - self.saturation), 1 + self.saturation),
                "hue": (-self.hue, self.hue)}

    def draw(self, rng: np.random.Generator) -> tuple[list[tuple[str, float]], bool]:
        """The jitter's operations in the order applied, with their factors, and whether to make it grey.

        Always takes the same number of draws from ``rng``, whatever the outcome.
        """
        jitter = rng.random() < self.prob
        order = rng.permutation(len(OPERATIONS))
        factors = {name: float(rng.uniform(low, high)) for name, (low, high) in self.ranges().items()}
        grey = bool(rng.random() < self.greyscale_prob)
        steps = [(OPERATIONS[i], factors[OPERATIONS[i]]) for i in order if getattr(self, OPERATIONS[i]) > 0]
        return (steps if jitter else []), grey

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, 3) uint8 RGB → a colour-augmented copy, (H, W, 3) uint8."""
        steps, grey = self.draw(rng)
        return apply_colour(image, steps, grey)


def adjust_hue(image: torch.Tensor, hue_factor: float) -> torch.Tensor:
    """torchvision's ``adjust_hue`` of a (3, H, W) uint8 image: the hue turned by ``hue_factor`` of the circle
    in HSV space, the result scaled back to uint8 as torchvision does (× 255.999, truncated); computed with
    OpenCV's float HSV conversion (torchvision's pure-torch one is about 9× slower on a CPU)."""
    rgb = image.permute(1, 2, 0).numpy().astype(np.float32) / 255.0
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # H in degrees
    hsv[..., 0] = np.mod(hsv[..., 0] + 360.0 * hue_factor, 360.0)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    out = np.clip(rgb * (256.0 - 1e-3), 0, 255).astype(np.uint8)
    return torch.from_numpy(out).permute(2, 0, 1)


ADJUST = {"brightness": TF.adjust_brightness, "contrast": TF.adjust_contrast,
          "saturation": TF.adjust_saturation, "hue": adjust_hue}


def apply_colour(image: np.ndarray, steps: list[tuple[str, float]], grey: bool) -> np.ndarray:
    """Apply the operations ``steps`` ((name, factor), in order), then greyscale if ``grey``, with torchvision."""
    if not steps and not grey:
        return image.copy()
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # (3, H, W) uint8
    for name, factor in steps:
        x = ADJUST[name](x, factor)
    if grey:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    return np.ascontiguousarray(x.permute(1, 2, 0).numpy())
