"""What machine a benchmark ran on, for the tables it prints."""
from __future__ import annotations

import statistics

from provenance import cpu_model  # what a run records in environment.json

__all__ = ["cpu_model", "print_median_table"]


def print_median_table(setting: str, first_column: str, unit: str, times: dict[str, list[float]]) -> None:
    """The machine and ``setting``, then a Markdown table of the median of each list of ``times`` (seconds) in ms."""
    import torch

    repeats = len(next(iter(times.values())))
    print(f"Machine: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; {setting}; "
          f"medians of {repeats} repeats\n")
    print(f"| {first_column} | ms per {unit} (median) |\n|---|---:|")
    for key, values in times.items():
        print(f"| {key} | {1e3 * statistics.median(values):.2f} |")
