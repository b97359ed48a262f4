"""The step-time benchmark runs and reports what its table says (timings themselves are not tested)."""
import math

import torch

from benchmarks import bench_regularizers


def test_regularizer_step_benchmark_rows():
    rows = bench_regularizers.measure("unet_small", ["none", "cutmix", "vat"], 1, torch.device("cpu"))
    assert [r["reg"] for r in rows] == ["none", "cutmix", "vat"]
    for r in rows:
        for key in ("step", "bare", "step_cpu", "bare_cpu"):
            assert r[key] > 0
        assert math.isclose(r["ratio"], r["step"] / r["bare"])
        assert r["ratio_min"] > 0  # one repeat: the fastest is the only one
        assert math.isclose(r["ratio_min"], r["ratio"])
    table = bench_regularizers.markdown(rows, [])
    assert table.count("\n") == 1 + len(rows) and "wall ratio, fastest" in table
