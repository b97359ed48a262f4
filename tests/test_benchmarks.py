"""The step-time benchmark runs and reports what its table says (timings themselves are not tested)."""
import json
import math

import click
import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import provenance
import toy2d
import train_seg_semisup
from benchmarks import (
    bench_colour,
    bench_keep_memory,
    bench_masks,
    bench_regularizers,
    fashion_replication_table,
    mask_vs_loss,
    synthetic_semisup,
    toy2d_contour_bias,
    toy2d_fidelity,
    toy2d_speed,
    toy2d_trajectory,
)


def test_regularizer_step_benchmark_rows():
    rows = bench_regularizers.measure("unet_small", ["none", "cutmix", "vat"], 1, torch.device("cpu"))
    assert [r["reg"] for r in rows] == ["none", "cutmix", "vat"]
    for r in rows:
        for key in ("step", "bare", "step_cpu", "bare_cpu"):
            assert r[key] > 0
        assert math.isclose(r["ratio"], r["step"] / r["bare"])
        assert r["ratio_min"] > 0  # one repeat: the fastest is the only one
        assert math.isclose(r["ratio_min"], r["ratio"])
        assert math.isclose(r["ratio_paired"], r["ratio"])
        assert math.isclose(r["ratio_cpu_paired"], r["ratio_cpu"])
        assert r["ratio_paired_ci"] == (r["ratio_paired"], r["ratio_paired"])  # one value: no spread
    table = bench_regularizers.markdown(rows, [])
    assert table.count("\n") == 1 + len(rows) and "wall ratio, paired [95 % CI]" in table
    assert table.splitlines()[0].count("|") == table.splitlines()[-1].count("|")  # every row fills each column


def test_median_ci_covers_the_median_and_narrows_with_more_repeats():
    rng = np.random.default_rng(1)
    few, many = 1.03 + 0.05 * rng.standard_normal(11), 1.03 + 0.05 * rng.standard_normal(401)
    for values in (few, many):
        low, high = bench_regularizers.median_ci(list(values))
        assert low <= np.median(values) <= high
    assert np.subtract(*bench_regularizers.median_ci(list(many)))**2 < np.subtract(*bench_regularizers.median_ci(
        list(few)))**2
    # seeded: the same timings give the same interval. Irregular samples of even size, whose bootstrap medians
    # (means of two middle values) take so many values that an unseeded bootstrap would move the interval
    samples = [list(np.exp(0.3 * rng.standard_normal(n))) for n in (60, 80, 100, 120)]
    cis = [bench_regularizers.median_ci(values) for values in samples]
    assert cis == [bench_regularizers.median_ci(list(values)) for values in samples]
    for values, ci in zip(samples, cis, strict=True):
        assert min(values) < ci[0] < np.median(values) < ci[1] < max(values)
        # the same bootstrap medians cut at a lower level: an interval inside this one
        narrow = bench_regularizers.median_ci(values, level=0.5)
        assert ci[0] < narrow[0] <= np.median(values) <= narrow[1] < ci[1]
    assert bench_regularizers.median_ci([1.25] * 9) == (1.25, 1.25)


def test_toy2d_trajectory_composes_runs_by_epoch(tmp_path):
    size = 40
    c = np.arange(size) + 0.5
    disk = np.hypot(*np.meshgrid(c - size / 2, c - size / 2)) < 12
    Image.fromarray(disk.astype(np.uint8) * 255).save(tmp_path / "disk.png")
    for name in ("a", "b"):
        args = ["train", f"--dataset=img:{tmp_path / 'disk.png'}", "--erode-radius", "0", "--epochs", "2",
                "--render-every", "1", "--hidden-size", "8", "--n-hidden", "1", "--threads", "1",
                "--out-dir", str(tmp_path / name)]
        assert CliRunner().invoke(toy2d.cli, args).exit_code == 0
    out = tmp_path / "t.png"
    result = CliRunner().invoke(toy2d_trajectory.main, [f"{tmp_path / 'a'}=first", str(tmp_path / "b"),
                                                        "--epochs", "1,2", "--scale", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    # 2 rows x 2 columns of 40x40 pictures under a 54 px title bar, 10 px margins
    assert cv2.imread(str(out)).shape == (2 * (40 + 54) + 3 * 10, 2 * 40 + 3 * 10, 3)
    # an epoch that was not rendered is a one-line error naming the file
    result = CliRunner().invoke(toy2d_trajectory.main, [str(tmp_path / "a"), "--epochs", "3", "--out", str(out)])
    assert result.exit_code == 1 and "epoch_00003.png" in result.output and "Traceback" not in result.output


def test_toy2d_speed_rows():
    rows = toy2d_speed.measure(["a", "d"], epochs=1, repeats=1, hidden_size=4, n_hidden=1, batch_size=4096)
    assert [r["panel"] for r in rows] == ["(a) supervised only, gap", "(d) no gap, constrained"]
    for r in rows:
        assert r["repeated"] > 0 and r["unique"] > 0 and math.isclose(r["ratio"], r["repeated"] / r["unique"])
    assert toy2d_speed.markdown(rows).count("\n") == 1 + len(rows)
    title, cfg = toy2d_speed.panel_config("d")
    assert cfg.dist_contour_range == 4.0 and cfg.erode_radius == 0 and cfg.sup_erode_radius == 35  # figure1's (d)


def test_toy2d_speed_unknown_panel_is_one_line():
    result = CliRunner().invoke(toy2d_speed.main, ["--panels", "a,x"])
    assert result.exit_code == 2 and "unknown panel 'x'" in result.output and "Traceback" not in result.output


def test_keep_memory_benchmark_runs_both_modes_with_the_same_result(tmp_path):
    finals = {mode: bench_keep_memory.run_once(mode, "cutmix", 2, 1, "unet_small", tmp_path / mode)
              for mode in bench_keep_memory.MODES}
    keep, default = finals.values()
    assert keep["miou"] == default["miou"]  # the allocator's policy changes no number
    assert keep["faults"] > 0 and default["faults"] > 0
    assert json.loads((tmp_path / "--no-keep-freed-memory" / "config.json").read_text())["keep_freed_memory"] is False


def test_keep_memory_benchmark_bad_regularizer_is_one_line(tmp_path):
    result = CliRunner().invoke(bench_keep_memory.main, ["--reg", "nonsense", "--iters", "1", "--repeats", "1"])
    assert result.exit_code != 0 and "Traceback" not in result.output
    message = result.output.strip()
    assert "\n" not in message and "training run failed (--reg nonsense" in message and "nonsense" in message


def test_mask_benchmark_compares_equal_masks():
    result = CliRunner().invoke(bench_masks.main, ["--batch", "3", "--size", "24", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    assert "| cow, matrix products |" in result.output and "| classmix, per image |" in result.output


def test_colour_benchmark_compares_the_hue_shifts():
    result = CliRunner().invoke(bench_colour.main, ["--height", "9", "--width", "13", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    assert "| hue shift, torchvision |" in result.output and "| whole jitter (ours) |" in result.output


def test_toy2d_fidelity_runs_the_chosen_dataset_and_checks_targets(tmp_path):
    c = np.arange(128) + 0.5
    disk = np.hypot(*np.meshgrid(c - 64, c - 64)) < 50  # survives the 35 px gap erosion on both sides
    Image.fromarray(disk.astype(np.uint8) * 255).save(tmp_path / "disk.png")
    dataset = f"img:{tmp_path / 'disk.png'}"
    out = tmp_path / "fid"
    args = ["--seeds", "0", "--epochs", "0", "--hidden-size", "4", "--jobs", "2", "--out-dir", str(out)]
    result = CliRunner().invoke(toy2d_fidelity.main, [*args, "--dataset", dataset])
    assert result.exit_code in (0, 1), result.output  # 1: a target failed (untrained nets)
    saved = json.loads((out / "results.json").read_text())
    assert saved["dataset"] == dataset and set(saved["panels"]) == set(toy2d_fidelity.PANELS)
    summary = json.loads((out / "seed_0" / "summary.json").read_text())
    assert {entry["settings"]["dataset"] for entry in summary} == {dataset}
    assert len(saved["targets"]) == 2 and result.exit_code == (0 if all(saved["targets"].values()) else 1)
    cmd = toy2d_fidelity.figure1_command(0, out, None, "cpu", 1, 512)
    assert cmd[cmd.index("--dataset") + 1] == "boundary"  # toy2d's default data: the shipped closed curve


def test_toy2d_fidelity_targets():
    def panel(name, err):
        return {"name": name, "title": name, "settings": {"epochs": 1}, "error_rate": err,
                "grid_error_rate": err, "seconds": 1.0}

    def summaries(a, b, c, d):
        return {0: [panel(n, e) for n, e in zip(toy2d_fidelity.PANELS, (a, b, c, d), strict=True)]}

    passed = toy2d_fidelity.summarise(summaries(0.10, 0.05, 0.20, 0.10))["targets"]
    assert all(passed.values())
    failed = toy2d_fidelity.summarise(summaries(0.10, 0.051, 0.20, 0.101))["targets"]
    assert not any(failed.values())


def test_contour_bias_rows_by_hand():
    # a half plane: contours are straight lines, so the kept steps change m symmetrically
    image = np.zeros((128, 128), bool)
    image[:, 64:] = True
    rows = toy2d_contour_bias.contour_bias(image, 200_000, 10.0, 2.0)
    assert [r["band"] for r in rows] == list(toy2d_contour_bias.BANDS)
    for r in rows:
        assert r["kept"] > 0 and abs(r["mean_change"]) < 0.2 and 0.45 < r["to_class0"] < 0.55
    # with no mask, steps around a disk do drift outwards outside it (the distance to a convex set is convex:
    # Jensen), which the measure must show
    c = np.arange(256) + 0.5
    disk = np.hypot(*np.meshgrid(c - 128, c - 128)) < 60
    outside = toy2d_contour_bias.contour_bias(disk, 200_000, 30.0, 1e9)[0]
    assert outside["mean_change"] < -1.0 and outside["to_class0"] > 0.55


def test_contour_bias_command_bad_dataset_is_one_line():
    result = CliRunner().invoke(toy2d_contour_bias.main, ["--dataset", "moon", "--points", "10"])
    assert result.exit_code == 2 and "--dataset" in result.output and "Traceback" not in result.output


def test_toy2d_fidelity_bad_dataset_is_one_line_before_any_run(tmp_path):
    out = tmp_path / "fid"
    result = CliRunner().invoke(toy2d_fidelity.main, ["--dataset", "moon", "--out-dir", str(out)])
    assert result.exit_code == 2 and "--dataset" in result.output and "Traceback" not in result.output
    assert not out.exists()  # nothing created, nothing run


def test_synthetic_benchmark_reuses_only_runs_of_the_same_settings(tmp_path):
    """--reuse keeps a finished run only if every setting it trained with is the one this invocation would
    resolve: other iterations, devices or regularizer defaults (VAT's loss: var, then kld) are refused."""
    out = tmp_path / "vat-s0"
    out.mkdir()
    (out / "final.json").write_text(json.dumps({"miou": 0.5, "seconds": 1.0}))
    config = train_seg_semisup.resolved_config(synthetic_semisup.train_args("vat", 0, out, 1, ["--device", "cpu"]))
    assert config["cons_loss"] == "kld" and config["iters"] == 2500 and config["dataset"] == "synthetic"

    def reuse(*extra):
        return CliRunner().invoke(synthetic_semisup.main, ["--regs", "vat", "--seeds", "0", "--threads", "1",
                                                           "--out-dir", str(tmp_path), "--reuse", "--", *extra])

    for key, value, message in (("iters", 20, "iters=20 (this invocation: 2500)"),
                                ("cons_loss", "var", "cons_loss=var (this invocation: kld)"),
                                ("conf_thresh", 0.5, "conf_thresh=0.5 (this invocation: 0.97)")):
        (out / "config.json").write_text(json.dumps({**config, key: value}))
        result = reuse("--device", "cpu")
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, result.output
    # the same settings (an option added since the run, absent from its config.json, had its default)
    (out / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "freeze_bn_affine"}))
    result = reuse("--device", "cpu")
    assert result.exit_code == 0 and "reusing" in result.output, result.output
    assert "not recorded (before environment.json)" in result.output  # the code is noted, not compared
    now = provenance.code_version()
    (out / "environment.json").write_text(json.dumps([{"start_iter": 0, **now}]))
    result = reuse("--device", "cpu")
    assert result.exit_code == 0 and ("note:" in result.output) == (not now["commit"] or now["uncommitted_changes"])
    (out / "environment.json").write_text(json.dumps([{"start_iter": 0, "commit": "0" * 40,
                                                       "uncommitted_changes": False}]))
    result = reuse("--device", "cpu")
    assert result.exit_code == 0 and f"ran with code {'0' * 40}; this checkout is" in result.output, result.output
    (out / "environment.json").write_text('{"commit": "x"}')
    result = reuse("--device", "cpu")
    assert result.exit_code == 0 and "is not a list of records: which code made" in result.output, result.output
    (out / "environment.json").write_text("[{")  # a damaged record of the code is a note, not a stop
    result = reuse("--device", "cpu")
    assert result.exit_code == 0 and f"cannot read {out / 'environment.json'}" in result.output, result.output
    (out / "environment.json").unlink()
    result = reuse("--device", "cpu", "--cons-loss", "var")
    assert result.exit_code == 1 and "cons_loss=kld (this invocation: var)" in result.output, result.output
    result = reuse("--no-such-option")
    assert result.exit_code == 1 and "the training options" in result.output and "no-such-option" in result.output


def test_run_all_stops_starting_runs_after_a_failure():
    started = []

    def fn(item):
        started.append(item)
        if item == 1:
            raise click.ClickException("run 1 failed")
        return item * 10

    assert synthetic_semisup.run_all(fn, [0, 2, 3], jobs=2) == [0, 20, 30]
    started.clear()
    with pytest.raises(click.ClickException, match="run 1 failed"):
        synthetic_semisup.run_all(fn, list(range(50)), jobs=1)
    assert started == [0, 1]  # one at a time: nothing after the failure started


def test_mask_vs_loss_table_and_contrasts_by_hand():
    def finals(*mious):
        return [{"miou": m / 100, "seconds": 60.0} for m in mious]

    results = {"none": finals(50, 60), "cutmix-var": finals(70, 65), "nomask-var": finals(52, 65),
               "cutmix-pseudo_ce": finals(71, 64)}
    table = mask_vs_loss.markdown(results, [0, 1])
    assert ("| cutmix-var | `--reg=cutmix --cons-loss=var` | 70.00 | 65.00 | 67.50 ± 3.54 | +20.00, +5.00 | +12.50 |"
            in table)
    # the mask with var: +18 and a tie (a tie is not "ahead"); the loss with CutMix: +1, -1
    assert "| the mask, with var (cutmix-var − nomask-var) | +18.00, +0.00 | +9.00 | 1 of 2 seeds |" in table
    assert "(cutmix-pseudo_ce − cutmix-var) | +1.00, -1.00 | +0.00 | 1 of 2 seeds |" in table
    assert "nomask-pseudo_ce −" not in table  # a contrast needs both of its cells


def test_mask_vs_loss_reuses_only_its_own_cell_and_names_bad_cells(tmp_path):
    # a "no mask" run sitting where the CutMix run belongs is refused, not reused as CutMix
    out = tmp_path / "cutmix-var-s0"
    out.mkdir()
    (out / "final.json").write_text(json.dumps({"miou": 0.5, "seconds": 1.0}))
    args = synthetic_semisup.train_args("cutmix", 0, out, 1, ["--cons-loss=var"])
    config = train_seg_semisup.resolved_config(args)
    (out / "config.json").write_text(json.dumps({**config, "mask_prop_range": "0"}))
    result = CliRunner().invoke(mask_vs_loss.main, ["--cells", "cutmix-var", "--seeds", "0", "--out-dir",
                                                    str(tmp_path), "--reuse"])
    assert result.exit_code == 1 and "mask_prop_range=0 (this invocation: 0.5)" in result.output, result.output
    (out / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(mask_vs_loss.main, ["--cells", "cutmix-var", "--seeds", "0", "--out-dir",
                                                    str(tmp_path), "--reuse"])
    assert result.exit_code == 0 and "reusing" in result.output, result.output
    assert json.loads((tmp_path / "results.json").read_text())["cells"]["cutmix-var"] == [
        {"seed": 0, "miou": 0.5, "seconds": 1.0}]

    result = CliRunner().invoke(mask_vs_loss.main, ["--cells", "cutmix,none", "--out-dir", str(tmp_path / "x")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "unknown cell(s) cutmix" in lines[0], result.output
    assert not (tmp_path / "x").exists()


def test_fashion_replication_table_by_hand(tmp_path):
    def finished(name, miou, test_miou, seconds):
        (tmp_path / name).mkdir()
        (tmp_path / name / "final.json").write_text(json.dumps({"miou": miou, "test_miou": test_miou,
                                                                 "seconds": seconds}))

    finished("none-s3", 0.30, 0.31, 300)
    finished("cutmix-s3", 0.32, 0.33, 700)
    finished("cutmix_colour-s3", 0.36, 0.35, 1000)
    finished("none-s4", 0.20, 0.21, 300)
    finished("cutmix-s4", 0.26, 0.25, 800)
    finished("cutmix_colour-s4", 0.25, 0.24, 850)
    finished("none-s5", 0.28, 0.28, 300)  # seed 5 incomplete: left out of the table and named
    (tmp_path / "cutmix-s5").mkdir()
    result = CliRunner().invoke(fashion_replication_table.main, [str(tmp_path)])
    assert result.exit_code == 1, result.output  # a target fails
    lines = result.output.splitlines()
    assert "| CutMix | 32.00 / 33.00 | 26.00 / 25.00 | 29.00 ± 4.24 | 29.00 ± 5.66 | +2.00, +6.00 (mean +4.00) " \
           "| 11.7–13.3 |" in lines
    assert "| CutMix + `--aug-strong-colour` | 36.00 / 35.00 | 25.00 / 24.00 | 30.50 ± 7.78 | 29.50 ± 7.78 | " \
           "+6.00, +5.00 (mean +5.50) | 14.2–16.7 |" in lines
    assert lines.count("PASS  ahead of the baseline on every seed") == 2
    assert "PASS  mean gain ≥ 3 points (got 4.00)" in lines and "PASS  every run ≤ 15 min (slowest 13.3)" in lines
    assert "FAIL  every run ≤ 15 min (slowest 16.7)" in lines
    assert lines[-1] == "not in the table: cutmix-s5, none-s5 (unfinished, or their seed is)"
    for name in ("none-s3", "none-s4"):
        (tmp_path / name / "final.json").unlink()
    result = CliRunner().invoke(fashion_replication_table.main, [str(tmp_path)])
    assert result.exit_code == 1 and result.output.startswith("Error: no seed in") and len(
        result.output.splitlines()) == 1
