"""One picture of how toy2d runs evolve: a row per run, a column per chosen epoch (issue 6's drift study).

Each run directory must come from ``toy2d.py train --render-every N`` (its ``epochs/epoch_XXXXX.png`` and
the error that ``metrics.jsonl`` records at those epochs). A run is given as ``DIR`` or ``DIR=LABEL``.

    python -m benchmarks.toy2d_trajectory runs/conf0=--conf-thresh 0 runs/base=paper settings \\
        --epochs 10,30,50,70,100 --scale 0.4 --out trajectory.jpg
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cli_errors
import toy2d  # noqa: E402


def run_row(run_dir: Path, label: str, epochs: list[int], scale: float) -> list[np.ndarray]:
    """The titled pictures of one run at the given epochs."""
    errors = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "error_rate" in record:
            errors[record["epoch"]] = record["error_rate"]
    panels = []
    for epoch in epochs:
        path = run_dir / "epochs" / f"epoch_{epoch:05d}.png"
        if not path.is_file() or epoch not in errors:
            raise click.ClickException(f"{path} or its error in metrics.jsonl is missing: "
                                       f"train with --render-every dividing {epoch}")
        picture = cv2.imread(str(path))
        picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        panels.append(toy2d.titled(picture, [label, f"epoch {epoch}: error {errors[epoch]:.2%}"]))
    return panels


@click.command(cls=cli_errors.Command)
@click.argument("runs", nargs=-1, required=True)
@click.option("--epochs", default="10,30,50,70,100", show_default=True, help="comma-separated epochs (columns)")
@click.option("--scale", type=click.FloatRange(0.05, 2.0), default=0.4, show_default=True,
              help="size of each picture relative to the run's")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), required=True, help="output image (.jpg/.png)")
def main(runs, epochs, scale, out_path):
    try:
        columns = [int(e) for e in epochs.split(",")]
    except ValueError:
        raise click.BadParameter(f"{epochs!r}: give epochs as integers, e.g. 10,30,50", param_hint="--epochs") from None
    panels = []
    for spec in runs:
        run_dir, _, label = spec.partition("=")
        run_dir = Path(run_dir)
        if not (run_dir / "metrics.jsonl").is_file():
            raise click.ClickException(f"{run_dir}: not a toy2d run directory (no metrics.jsonl)")
        panels += run_row(run_dir, label or run_dir.name, columns, scale)
    picture = toy2d.compose_grid(panels, n_cols=len(columns))
    if not cv2.imwrite(out_path, picture):
        raise click.ClickException(f"could not write {out_path}: use a .jpg or .png name in an existing folder")
    click.echo(f"wrote {out_path} ({len(runs)} runs x {len(columns)} epochs)")


if __name__ == "__main__":
    main()
