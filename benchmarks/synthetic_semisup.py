"""Benchmark: supervised baseline vs consistency regularizers on the synthetic shapes, several seeds.

THE PROTOCOL (fixed before comparing methods; identical for every regularizer, nothing tuned per method):
    python train_seg_semisup.py --dataset=synthetic --reg=REG --seed=S
with the synthetic recipe's defaults — small U-Net (width 16), 100 labelled images out of 4,000 (all
4,000 unlabelled), 64×64 crops with random scale 0.75–1.25 and h-flips, batch 16 labelled + 16
unlabelled (+16 mixing partners), Adam lr 1e-3 constant, 3,000 iterations, mean teacher α 0.99,
confidence threshold 0.97, each regularizer's paper weight (1 for Cutout/CutMix); evaluation of the
final teacher on the 500 validation images. Seeds 0, 1, 2 (seed = split seed).

Each run is a separate process (so peak RSS is per run) with ``--threads`` torch threads; ``--jobs``
runs go at once (e.g. ``--jobs 2 --threads 1`` on 2 cores).
Usage:
    python benchmarks/synthetic_semisup.py                       # none vs cutmix, seeds 0 1 2
    python benchmarks/synthetic_semisup.py --regs none,cutout,cutmix --out-dir runs/bench_synthetic
    python benchmarks/synthetic_semisup.py --reuse               # keep finished runs, run the rest
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

import cli_errors
import regularizers

ROOT = Path(__file__).resolve().parents[1]


def run_one(reg: str, seed: int, out: Path, threads: int, extra: list[str]) -> dict:
    cmd = [sys.executable, str(ROOT / "train_seg_semisup.py"), "--dataset=synthetic", f"--reg={reg}",
           f"--seed={seed}", f"--threads={threads}", f"--out-dir={out}", "--overwrite", *extra]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    t0 = time.time()
    log_path = out.parent / f"{out.name}.log"
    with open(log_path, "w") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        last = log_path.read_text().strip().splitlines()[-1:] or [""]
        raise click.ClickException(f"--reg={reg} seed {seed} failed (exit {code}): {last[0]}  (log: {log_path})")
    final = json.loads((out / "final.json").read_text())
    final["wall_seconds"] = time.time() - t0
    return final


def settings_from_args(args: list[str]) -> dict[str, str | bool]:
    """``--key value``, ``--key=value``, ``--flag`` and ``--no-flag`` as config keys (values as given)."""
    settings, i = {}, 0
    while i < len(args):
        name, _, value = args[i].removeprefix("--").partition("=")
        if not value and i + 1 < len(args) and not args[i + 1].startswith("--"):
            value, i = args[i + 1], i + 1
        if value:
            settings[name.replace("-", "_")] = value
        elif name.startswith("no-"):
            settings[name[3:].replace("-", "_")] = False
        else:
            settings[name.replace("-", "_")] = True
        i += 1
    return settings


def reuse_conflicts(out: Path, wanted: dict) -> list[str]:
    """The settings of this invocation that the run in ``out`` did not use (empty: it may be reused)."""
    config_path = out / "config.json"
    if not config_path.is_file():
        return [f"{config_path} is missing"]
    config = json.loads(config_path.read_text())
    differ = []
    for key, value in wanted.items():
        have = config.get(key)
        if have != value and not (isinstance(value, str) and str(have) == value):
            differ.append(f"{key}={have} (this invocation: {value})")
    return differ


@click.command(cls=cli_errors.Command)
@click.option("--regs", default="none,cutmix", show_default=True, help="comma-separated --reg values")
@click.option("--seeds", default="0,1,2", show_default=True)
@click.option("--threads", default=2, show_default=True, type=int)
@click.option("--out-dir", default="runs/bench_synthetic", show_default=True, type=click.Path(file_okay=False))
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1), help="runs at once")
@click.option("--reuse/--no-reuse", default=False, help="reuse runs that already wrote final.json")
@click.argument("extra", nargs=-1)
def main(regs, seeds, threads, jobs, out_dir, reuse, extra):
    """Run the protocol above; EXTRA arguments go to every training run (e.g. --iters 100 for a smoke test)."""
    regs, seeds = regs.split(","), [int(s) for s in seeds.split(",")]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [(reg, seed) for seed in seeds for reg in regs]

    def one(run):
        reg, seed = run
        out = out_dir / f"{reg}-s{seed}"
        reused = reuse and (out / "final.json").is_file()
        if reused:  # only a run of the same settings: a table mixing devices or iterations would mislead
            # with the regularizer's defaults: a run made before one changed (VAT's loss: var, then kld on
            # 2026-12-03) must not be reused as a run of the new default
            wanted = {**regularizers.regularizer_defaults(reg), "dataset": "synthetic", "reg": reg, "seed": seed,
                      "threads": threads, **settings_from_args(list(extra))}
            conflicts = reuse_conflicts(out, wanted)
            if conflicts:
                raise click.ClickException(f"--reuse: {out} ran with {'; '.join(conflicts)}; choose another "
                                           f"--out-dir or move that run away")
            click.echo(f"{reg} seed {seed}: reusing {out}")
            final = json.loads((out / "final.json").read_text())
        else:
            final = run_one(reg, seed, out, threads, list(extra))
        final["device"] = json.loads((out / "config.json").read_text())["device"]
        if reused:
            return final
        click.echo(f"{reg} seed {seed}: mIoU {100 * final['miou']:.2f}%  {final['seconds']:.0f} s  "
                   f"peak RSS {final.get('peak_rss_mb') or float('nan'):.0f} MB")
        return final

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        finals = dict(zip(runs, pool.map(one, runs), strict=True))
    results = {reg: [finals[(reg, seed)] for seed in seeds] for reg in regs}

    lines = ["| reg | " + " | ".join(f"seed {s}" for s in seeds) +
             " | mean ± std | minutes/run | peak RSS MB | device per seed |",
             "|---|" + "---|" * len(seeds) + "---|---|---|---|"]
    for reg, finals in results.items():
        mious = [100 * f["miou"] for f in finals]
        std = statistics.stdev(mious) if len(mious) > 1 else 0.0
        lines.append(f"| {reg} | " + " | ".join(f"{m:.2f}" for m in mious) +
                     f" | {statistics.mean(mious):.2f} ± {std:.2f} | "
                     f"{statistics.median(f['seconds'] for f in finals) / 60:.1f} | "
                     f"{max(f.get('peak_rss_mb') or 0 for f in finals):.0f} | "
                     f"{', '.join(f['device'] for f in finals)} |")
    table = "\n".join(lines)
    click.echo("\n" + table)
    (out_dir / "table.md").write_text(table + "\n")
    if "none" in results:
        base = [f["miou"] for f in results["none"]]
        for reg, finals in results.items():
            if reg != "none":
                gains = [100 * (f["miou"] - b) for f, b in zip(finals, base, strict=True)]
                click.echo(f"{reg} − none per seed: " + ", ".join(f"{g:+.2f}" for g in gains) +
                           f"; mean {statistics.mean(gains):+.2f} points")


if __name__ == "__main__":
    main()
