"""What machine a benchmark ran on, for the tables it prints."""
from __future__ import annotations

import platform
import statistics
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def print_median_table(setting: str, first_column: str, unit: str, times: dict[str, list[float]]) -> None:
    """The machine and ``setting``, then a Markdown table of the median of each list of ``times`` (seconds) in ms."""
    import torch

    repeats = len(next(iter(times.values())))
    print(f"Machine: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; {setting}; "
          f"medians of {repeats} repeats\n")
    print(f"| {first_column} | ms per {unit} (median) |\n|---|---:|")
    for key, values in times.items():
        print(f"| {key} | {1e3 * statistics.median(values):.2f} |")
