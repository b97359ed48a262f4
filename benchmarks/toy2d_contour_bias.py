"""Do the perturbations that toy2d's contour mask keeps land farther out from a closed region?

For each boundary image: uniform points x over the image, isotropic steps x_hat = x + N(0, sigma^2) px, the
signed distance map m (toy2d.signed_distance_map, read bilinearly at pixel centres, border values outside)
at both; among the pairs the mask keeps (|m(x_hat) - m(x)| <= range px), the mean change m(x_hat) - m(x)
(+ = towards class 1) and the share of kept steps that move towards class 0, in bands of m(x). A systematic
outward drift of the kept steps would show as a mean change of the same sign on both sides of a closed
region's boundary.

    python -m benchmarks.toy2d_contour_bias                       # both shipped images, paper's 30 px / 4 px
    python -m benchmarks.toy2d_contour_bias --points 100000 --dataset img:PATH
"""
import click
import numpy as np
from scipy.ndimage import map_coordinates

import cli_errors
import toy2d

BANDS = ((-60.0, -20.0), (-20.0, 0.0), (0.0, 20.0), (20.0, 60.0))


def contour_bias(image: np.ndarray, points: int, sigma: float, max_change: float, seed: int = 0) -> list[dict]:
    """Per band of m(x): kept pairs, mean m(x_hat) - m(x) (px), share of kept steps towards class 0."""
    m = toy2d.signed_distance_map(image).astype(np.float64)
    h, w = m.shape
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, [w, h], size=(points, 2))  # (x, y) in pixels
    x_hat = x + rng.normal(0.0, sigma, size=x.shape)

    def read(p):  # bilinear, pixel centres at +0.5, the nearest border value outside
        return map_coordinates(m, [np.clip(p[:, 1] - 0.5, 0, h - 1), np.clip(p[:, 0] - 0.5, 0, w - 1)], order=1)

    m0, m1 = read(x), read(x_hat)
    change = m1 - m0
    kept = np.abs(change) <= max_change
    rows = []
    for low, high in BANDS:
        sel = kept & (m0 > low) & (m0 <= high)
        rows.append({"band": (low, high), "kept": int(sel.sum()),
                     "mean_change": float(change[sel].mean()) if sel.any() else float("nan"),
                     "to_class0": float((change[sel] < 0).mean()) if sel.any() else float("nan")})
    return rows


@click.command(cls=cli_errors.Command)
@click.option("--dataset", "datasets", multiple=True, help="boundary, curve or img:PATH [boundary and curve]")
@click.option("--points", type=click.IntRange(min=1), default=2_000_000, show_default=True)
@click.option("--sigma", type=click.FloatRange(min=0.0), default=30.0, show_default=True, help="step, px")
@click.option("--range", "max_change", type=click.FloatRange(min=0.0), default=4.0, show_default=True,
              help="contour mask, px")
@click.option("--seed", type=int, default=0, show_default=True)
def main(datasets, points, sigma, max_change, seed):
    for name in datasets or ("boundary", "curve"):
        try:
            data = toy2d.build_dataset(name, 0.0, 0.0, 1, False, np.random.default_rng(0))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--dataset") from None
        for row in contour_bias(data.image, points, sigma, max_change, seed):
            low, high = row["band"]
            click.echo(f"{name:9s} m(x) in ({low:+4.0f}, {high:+4.0f}] px: kept {row['kept']:7d}, "
                       f"mean m(x_hat) - m(x) {row['mean_change']:+.3f} px, towards class 0 {row['to_class0']:.3f}")


if __name__ == "__main__":
    main()
