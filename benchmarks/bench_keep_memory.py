"""Training speed with and without ``--keep-freed-memory`` (glibc malloc keeps freed blocks for the next step).

Runs ``train_seg_semisup.py`` on the synthetic set (recipe defaults, a small training set, evaluation on a
few images at the end only) once per mode and repeat, the two modes alternating (ABBA), each run its own
process, and prints per mode the median wall seconds per iteration (final.json's ``seconds`` over the
iterations; it includes start-up and the final evaluation, the same in both modes), the page faults the
run took (minor faults of the child process: start-up, importing torch, included) and peak RSS.
The figure of merit is the ratio of the medians, keep / default, measured in one invocation.

    OMP_NUM_THREADS=2 python -m benchmarks.bench_keep_memory                       # cutmix, 200 iterations, 3 repeats
    OMP_NUM_THREADS=2 python -m benchmarks.bench_keep_memory --reg none --iters 100 --repeats 2
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import click

import cli_errors
from benchmarks.bench_architectures import cpu_model

ROOT = Path(__file__).resolve().parents[1]
MODES = ("--keep-freed-memory", "--no-keep-freed-memory")


def run_once(mode: str, reg: str, iters: int, threads: int, arch: str, out: Path) -> dict:
    """One training run in its own process; its final.json plus the page faults it took."""
    cmd = [sys.executable, str(ROOT / "train_seg_semisup.py"), "--dataset=synthetic", f"--reg={reg}",
           f"--arch={arch}", "--synthetic-n-train=400", "--synthetic-n-val=16", f"--iters={iters}",
           "--eval-every=0", f"--threads={threads}", "--seed=0", mode, f"--out-dir={out}", "--overwrite"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise click.ClickException(f"training run failed (--reg {reg} --arch {arch}): {last}")
    final = json.loads((out / "final.json").read_text())
    final["faults"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before
    return final


@click.command(cls=cli_errors.Command)
@click.option("--reg", default="cutmix", show_default=True, help="regularizer of the runs")
@click.option("--arch", default="unet_small", show_default=True)
@click.option("--iters", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="runs per mode")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True, help="torch threads per run")
def main(reg, arch, iters, repeats, threads):
    runs = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for mode in MODES if i % 2 == 0 else MODES[::-1]:
                final = run_once(mode, reg, iters, threads, arch, Path(tmp) / f"run{i}{mode}")
                runs[mode].append(final)
                print(f"{mode} repeat {i}: {final['seconds']:.1f} s, {final['faults']} faults, "
                      f"mIoU {100 * final['miou']:.2f}", file=sys.stderr, flush=True)
    rows = {}
    for mode, finals in runs.items():
        rows[mode] = {"s_per_iter": statistics.median(f["seconds"] for f in finals) / iters,
                      "faults_per_iter": statistics.median(f["faults"] for f in finals) / iters,
                      "peak_rss_mb": statistics.median(f["peak_rss_mb"] or 0.0 for f in finals),
                      "miou": [round(100 * f["miou"], 2) for f in finals]}
    keep, default = rows[MODES[0]], rows[MODES[1]]
    print(f"Machine: {cpu_model()}; {os.cpu_count()} CPU cores visible; {threads} threads per run; {arch}, "
          f"--reg {reg}, {iters} iterations, {repeats} runs per mode, alternating\n")
    print("| mode | s / iteration (median) | page faults / iteration | peak RSS (MB) | mIoU of the runs |")
    print("|---|---:|---:|---:|---|")
    for mode, row in rows.items():
        print(f"| `{mode}` | {row['s_per_iter']:.4f} | {row['faults_per_iter']:.0f} | {row['peak_rss_mb']:.0f} "
              f"| {', '.join(f'{m:.2f}' for m in row['miou'])} |")
    print(f"\nkeep / default time per iteration: {keep['s_per_iter'] / default['s_per_iter']:.3f}")


if __name__ == "__main__":
    main()
