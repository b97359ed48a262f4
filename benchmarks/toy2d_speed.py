"""Seconds per epoch of toy2d's training at the paper's settings, with and without --sup-unique (issue 6).

For each chosen Figure-1 panel (its settings exactly as `toy2d.py figure1` runs it), trains `--epochs`
epochs with the labelled batch's hidden layers run once per distinct point (`sup_unique`, the default)
and with every repeated copy (the authors' way), alternating the two `--repeats` times in one process so
that both see the same machine load; prints the median seconds per epoch of each and their ratio.

    OMP_NUM_THREADS=1 python -m benchmarks.toy2d_speed                        # panels a and d, 1 epoch, 2 repeats
    OMP_NUM_THREADS=1 python -m benchmarks.toy2d_speed --panels a,b,c,d --repeats 3
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cli_errors
import toy2d  # noqa: E402
from benchmarks.machine import cpu_model  # noqa: E402


def panel_config(letter: str, **changes) -> tuple[str, toy2d.ToyConfig]:
    """The settings figure1 gives panel `letter` (labelled points from the gap data), with `changes`."""
    for name, title, overrides in toy2d.FIGURE1_PANELS:
        if name[0] == letter:
            cfg = dataclasses.replace(toy2d.ToyConfig(), **overrides)
            if cfg.erode_radius != toy2d.ToyConfig().erode_radius:
                cfg = dataclasses.replace(cfg, sup_erode_radius=toy2d.ToyConfig().erode_radius)
            return title, dataclasses.replace(cfg, **changes)
    raise click.BadParameter(f"unknown panel {letter!r}: use a, b, c or d", param_hint="--panels")


def measure(letters: list[str], epochs: int, repeats: int, **changes) -> list[dict]:
    """Median seconds per epoch of each panel with sup_unique off and on, alternating."""
    rows = []
    for letter in letters:
        title, cfg = panel_config(letter, epochs=epochs, **changes)
        times = {False: [], True: []}
        for _ in range(repeats):
            for unique in (False, True):
                with tempfile.TemporaryDirectory() as tmp:
                    run_cfg = dataclasses.replace(cfg, sup_unique=unique)
                    final = toy2d.run_experiment(run_cfg, Path(tmp), log=lambda _: None)
                times[unique].append(final["seconds_per_epoch"])
        old, new = statistics.median(times[False]), statistics.median(times[True])
        rows.append({"panel": title, "width": cfg.hidden_size, "repeated": old, "unique": new, "ratio": old / new})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| panel | width | s/epoch, every copy | s/epoch, --sup-unique | speed-up |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['panel']} | {r['width']} | {r['repeated']:.2f} | {r['unique']:.2f} | {r['ratio']:.2f}× |")
    return "\n".join(lines)


@click.command(cls=cli_errors.Command)
@click.option("--panels", default="a,d", show_default=True, help="Figure-1 panels (a, b, c, d)")
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True, help="epochs per timed run")
@click.option("--repeats", type=click.IntRange(min=1), default=2, show_default=True, help="runs of each mode")
@click.option("--hidden-size", type=click.IntRange(min=1), default=toy2d.ToyConfig().hidden_size, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="torch CPU threads")
def main(panels, epochs, repeats, hidden_size, threads):
    torch.set_num_threads(threads)
    letters = [p.strip() for p in panels.split(",") if p.strip()]
    for letter in letters:
        panel_config(letter)  # unknown panels fail before any run
    rows = measure(letters, epochs, repeats, hidden_size=hidden_size)
    click.echo(f"Machine: {cpu_model()}; torch {torch.__version__}, {threads} thread(s); {epochs} epoch(s) per run, "
               f"median of {repeats} runs per mode, alternating\n")
    click.echo(markdown(rows))


if __name__ == "__main__":
    main()
