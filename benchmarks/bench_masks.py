"""Time of the cow and ClassMix masks of one batch, against the plain per-image way of making the same masks.

Cow masks: ``CowMaskGenerator.generate`` (the blur as matrix products where the kernel is long) against the
same generator with scipy's ``gaussian_filter`` per mask. ClassMix: ``class_mix_masks`` (one bincount and
one look-up) against a per-image ``np.unique`` / ``torch.isin`` loop. Both pairs give equal masks (checked
here on every repeat); the two ways alternate, medians over the repeats, one process.

    OMP_NUM_THREADS=1 python -m benchmarks.bench_masks                     # 16 masks of 64×64, 200 repeats
    OMP_NUM_THREADS=1 python -m benchmarks.bench_masks --batch 2 --size 321
"""
from __future__ import annotations

import time

import click
import numpy as np
import torch
from scipy.ndimage import gaussian_filter

import cli_errors
import regularizers.cow_masks as cow_masks
from benchmarks.machine import print_median_table
from regularizers.classmix import choose_classes, class_mix_masks


def per_image_blur(images: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    return np.stack([gaussian_filter(im, s, mode="reflect", truncate=4.0)
                     for im, s in zip(images, sigmas, strict=True)])


def per_image_class_masks(pred: torch.Tensor, valid: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    masks = torch.zeros(pred.shape[0], 1, *pred.shape[1:], dtype=valid.dtype)
    valid_np = valid[:, 0].numpy() > 0.5
    for i in range(pred.shape[0]):
        pixels = pred[i].numpy()[valid_np[i]] if valid_np[i].any() else pred[i].numpy()
        masks[i, 0] = torch.isin(pred[i], torch.from_numpy(choose_classes(np.unique(pixels), rng))).to(masks.dtype)
    return masks


@click.command(cls=cli_errors.Command)
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--size", type=click.IntRange(min=2), default=64, show_default=True, help="square mask side")
@click.option("--repeats", type=click.IntRange(min=1), default=200, show_default=True)
def main(batch, size, repeats):
    generator = cow_masks.CowMaskGenerator((0.5, 0.5), (4.0, 16.0))
    pred = torch.randint(0, 6, (batch, size, size), generator=torch.Generator().manual_seed(0))
    valid = torch.ones(batch, 1, size, size)
    times = {"cow, matrix products": [], "cow, scipy per mask": [], "classmix, bincount": [], "classmix, per image": []}
    fast_blur = cow_masks.gaussian_blur
    blurs = ((fast_blur, "cow, matrix products"), (per_image_blur, "cow, scipy per mask"))
    class_mixes = ((class_mix_masks, "classmix, bincount"), (per_image_class_masks, "classmix, per image"))
    for i in range(repeats):
        masks = {}
        for blur, key in blurs if i % 2 == 0 else blurs[::-1]:  # alternate which goes first
            cow_masks.gaussian_blur = blur
            t0 = time.perf_counter()
            masks[key] = generator.generate(batch, (size, size), np.random.default_rng(i))
            times[key].append(time.perf_counter() - t0)
        assert np.array_equal(*(masks[key] for _, key in blurs)), "the two blurs gave different masks"
        for fn, key in class_mixes if i % 2 == 0 else class_mixes[::-1]:
            t0 = time.perf_counter()
            masks[key] = fn(pred, valid, np.random.default_rng(i))
            times[key].append(time.perf_counter() - t0)
        assert torch.equal(*(masks[key] for _, key in class_mixes)), "ClassMix masks differ"
    cow_masks.gaussian_blur = fast_blur
    print_median_table(f"{batch} masks of {size}×{size}, σ 4–16 px", "masks", "batch", times)


if __name__ == "__main__":
    main()
