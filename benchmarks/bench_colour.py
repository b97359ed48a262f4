"""Time of the student's colour augmentation (``--aug-strong-colour``) per crop, and of its hue shift against
torchvision's ``adjust_hue``, which ``datapipe/colour.py`` replaces with the same operation through OpenCV.

Every repeat draws one random crop; the two hue shifts alternate which goes first, and their results are
compared (at most one grey level apart). Medians over the repeats, one process; the whole jitter is timed
with every operation on (jitter probability 1, no greyscale).

    OMP_NUM_THREADS=1 python -m benchmarks.bench_colour                        # 256×512 crops, 50 repeats
    OMP_NUM_THREADS=1 python -m benchmarks.bench_colour --height 64 --width 64
"""
from __future__ import annotations

import time

import click
import numpy as np
import torch
import torchvision.transforms.functional as TF

import cli_errors
from benchmarks.machine import print_median_table
from datapipe.colour import ColourJitter, adjust_hue


@click.command(cls=cli_errors.Command)
@click.option("--height", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--width", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=50, show_default=True)
def main(height, width, repeats):
    rng = np.random.default_rng(0)
    jitter = ColourJitter(prob=1.0, greyscale_prob=0.0)
    hues = (("hue shift, OpenCV (ours)", adjust_hue), ("hue shift, torchvision", TF.adjust_hue))
    times = {"whole jitter (ours)": [], **{name: [] for name, _ in hues}}
    for i in range(repeats):
        crop = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        x = torch.from_numpy(crop).permute(2, 0, 1)
        factor = float(rng.uniform(-0.1, 0.1))
        outputs = {}
        for name, fn in hues if i % 2 == 0 else hues[::-1]:  # alternate which goes first
            t0 = time.perf_counter()
            outputs[name] = fn(x, factor)
            times[name].append(time.perf_counter() - t0)
        difference = (outputs[hues[0][0]].int() - outputs[hues[1][0]].int()).abs().max().item()
        assert difference <= 1, f"the hue shifts differ by {difference} grey levels"
        t0 = time.perf_counter()
        jitter(crop, rng)
        times["whole jitter (ours)"].append(time.perf_counter() - t0)
    print_median_table(f"crops of {height}×{width}", "operation", "crop", times)


if __name__ == "__main__":
    main()
