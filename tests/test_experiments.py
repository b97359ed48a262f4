"""experiments/paper_tables.py: the paper's commands, running a table (finished runs kept, stopped ones
resumed), and the summary table beside the published numbers."""
import json
import os
import shlex
import signal
import threading
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from test_datasets import make_cityscapes

import train_seg_semisup
from experiments import paper_tables

pytestmark = pytest.mark.filterwarnings("ignore:.*(half-resolution|248×248) copy:UserWarning")


def invoke(*args):
    return CliRunner().invoke(paper_tables.main, [str(a) for a in args])


def printed_commands(*args) -> list[list[str]]:
    result = invoke("commands", *args)
    assert result.exit_code == 0, result.output
    return [shlex.split(line) for line in result.output.splitlines()]


def test_commands_follow_the_paper_and_every_one_parses(tmp_path):
    order = tmp_path / "mittal_split0_order.txt"
    order.write_text("2007_000032\n")
    tables = {"pascal_aug": printed_commands("--table", "pascal_aug", "--split-file", order),
              "cityscapes": printed_commands("--table", "cityscapes", "--data-dir", "data/cs", "--", "--device",
                                             "cuda"),
              "isic2017": printed_commands("--table", "isic2017")}
    assert [len(c) for c in tables.values()] == [5 * 2 * 1, 4 * 2 * 5, 1 * 2 * 5]  # labels × (none, cutmix) × seeds
    for name, commands in tables.items():
        for command in commands:
            assert command[:2] == ["python", "train_seg_semisup.py"]
            ctx = train_seg_semisup.main.make_context("train_seg_semisup.py", command[2:])  # every option exists
            assert ctx.params["dataset"] == name
            assert ctx.params["out_dir"] == (f"runs/paper/{name}/{ctx.params['arch']}/{ctx.params['reg']}-n"
                                             f"{ctx.params['n_sup'] or 'all'}-s{ctx.params['seed']}")
    pascal = [train_seg_semisup.main.make_context("t", c[2:]).params for c in tables["pascal_aug"]]
    assert [p["n_sup"] for p in pascal[::2]] == [106, 212, 529, 1323, None]
    assert all(p["split_file"] == str(order) for p in pascal if p["n_sup"]) and pascal[-1]["split_file"] is None
    assert all(p["arch"] == "deeplabv2_resnet101" and p["seed"] == 0 for p in pascal)
    city = tables["cityscapes"][0]
    assert city[2:] == ["--dataset=cityscapes", "--arch=deeplabv2_resnet101", "--reg=none", "--seed=12345",
                        "--n-sup=100", "--authors-split", "--split-seed=12345", "--data-dir=data/cs",
                        "--out-dir=runs/paper/cityscapes/deeplabv2_resnet101/none-n100-s12345", "--device", "cuda"]
    isic = [train_seg_semisup.main.make_context("t", c[2:]).params for c in tables["isic2017"]]
    assert {(p["arch"], p["n_sup"], p["authors_split"]) for p in isic} == {("densenet161_unet", 50, True)}
    assert sorted({p["seed"] for p in isic}) == [12345, 23456, 78901, 89012, 90123]
    # shards split the runs between GPUs: each run exactly once
    shards = [printed_commands("--table", "isic2017", "--shard", f"{k}/3") for k in range(3)]
    assert sorted(map(tuple, sum(shards, []))) == sorted(map(tuple, tables["isic2017"]))


@pytest.mark.parametrize("args, message", [
    (["--table", "pascal_aug"], "give --split-file mittal_split0_order.txt"),
    (["--table", "isic2017", "--", "--seed", "3"], "--seed after --: this script names each run"),
    (["--table", "isic2017", "--", "--out-dir=x"], "--out-dir after --"),
    (["--table", "isic2017", "--shard", "2/2"], "give K/N with 0 ≤ K < N"),
    (["--table", "isic2017", "--labels", "50,half"], "'half' is not a labelled count"),
    (["--table", "isic2017", "--labels", "50,50"], "names a count twice"),
    (["--table", "isic2017", "--seeds", "1,a"], "give comma-separated integers"),
    (["--table", "isic2017", "--seeds", "1,2,1"], "a seed is named twice"),
    (["--table", "isic2017", "--regs", "cutmx"], "'cutmx': not a perturbation; choose from none, "),
    (["--table", "isic2017", "--regs", "none,"], "'': not a perturbation"),
    (["--table", "mnist"], "--table"),
    (["--table", "isic2017", "--shards", "0/4"], "No such option '--shards'"),  # a typo is not passed on
    (["--table", "cityscapes", "--", "--no-authors-split"], "--no-authors-split after --"),  # --no- forms, aliases
    (["--table", "isic2017", "--", "--split_path", "x.txt"], "--split_path after --"),
    (["--table", "isic2017", "--", "-h"], "-h after --"),
    (["--table", "isic2017", "--", "--devise", "cuda"], "the training options after --: No such option '--devise'"),
])
def test_bad_options_are_one_line(args, message):
    result = invoke("commands", *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_run_keeps_finished_runs_resumes_stopped_ones_and_refuses_other_settings(tmp_path):
    root = make_cityscapes(tmp_path / "cityscapes", n_train=4)
    out_root = tmp_path / "paper"
    tiny = ["--batch-size", "2", "--crop-size", "32,32", "--no-pretrained", "--eval-every", "0", "--threads", "2"]

    def run(regs, *extra):
        return invoke("run", "--table", "cityscapes", "--arch", "unet_small", "--regs", regs, "--labels", "2",
                      "--seeds", "1", "--data-dir", root, "--out-root", out_root, "--", *tiny, *extra)

    # an option one of the runs refuses stops everything before any training (the baseline has no strong view)
    result = run("none,cutmix", "--iters", "2", "--aug-strong-colour")
    assert result.exit_code == 1 and "--aug-strong-colour" in result.output and not out_root.exists(), result.output

    result = run("none,cutmix", "--iters", "2")
    assert result.exit_code == 0, result.output
    assert "[1/2]" in result.output and "starting" in result.output and "mIoU" in result.output
    runs = {reg: out_root / "cityscapes" / "unet_small" / f"{reg}-n2-s1" for reg in ("none", "cutmix")}
    for reg, out in runs.items():
        config = json.loads((out / "config.json").read_text())
        assert (config["reg"], config["n_sup"], config["split_seed"], config["authors_split"]) == (reg, 2, 1, True)
        assert (out.parent / f"{out.name}.log").is_file()
    first = json.loads((runs["cutmix"] / "final.json").read_text())

    result = run("none,cutmix", "--iters", "2")  # nothing to do: both finished with these settings
    assert result.exit_code == 0 and result.output.count("finished before") == 2, result.output

    # a run that stopped at iteration 2 of 4 (its checkpoint is there, no final.json) is resumed, not restarted
    (runs["cutmix"] / "final.json").unlink()
    config = json.loads((runs["cutmix"] / "config.json").read_text())
    (runs["cutmix"] / "config.json").write_text(json.dumps({**config, "iters": 4}))
    result = run("cutmix", "--iters", "4", "--checkpoint-every", "1")  # how often it saves goes with --resume
    assert result.exit_code == 0 and "resuming" in result.output, result.output
    final = json.loads((runs["cutmix"] / "final.json").read_text())
    assert final["iters"] == 4 and first["iters"] == 2
    assert json.loads((runs["cutmix"] / "config.json").read_text())["checkpoint_every"] == 1
    assert [r["start_iter"] for r in json.loads((runs["cutmix"] / "environment.json").read_text())] == [0, 2]

    # where (and how often checkpointed) a run ran is not a setting: other threads, a data path by another
    # name (a link), another checkpoint period keep it
    (tmp_path / "link").symlink_to(root)
    result = invoke("run", "--table", "cityscapes", "--arch", "unet_small", "--regs", "none", "--labels", "2",
                    "--seeds", "1", "--data-dir", tmp_path / "link", "--out-root", out_root, "--", *tiny[:-2],
                    "--threads", "1", "--iters", "2", "--checkpoint-every", "1")
    assert result.exit_code == 0 and "finished before" in result.output, result.output

    # stopped after its last checkpoint, before final.json: the final evaluation is made again, nothing trained
    lines = (runs["none"] / "metrics.jsonl").read_text()
    before = json.loads((runs["none"] / "final.json").read_text())
    (runs["none"] / "final.json").unlink()
    result = run("none", "--iters", "2")
    assert result.exit_code == 0 and "resuming" in result.output, result.output
    after = json.loads((runs["none"] / "final.json").read_text())
    assert after["miou"] == before["miou"] and (runs["none"] / "metrics.jsonl").read_text() == lines

    # a stopped run continues from the same data in another folder (--data-dir goes with --resume)
    moved = tmp_path / "moved"
    root.rename(moved)
    (runs["none"] / "final.json").unlink()
    result = invoke("run", "--table", "cityscapes", "--arch", "unet_small", "--regs", "none", "--labels", "2",
                    "--seeds", "1", "--data-dir", moved, "--out-root", out_root, "--", *tiny, "--iters", "2")
    assert result.exit_code == 0 and "resuming" in result.output, result.output
    moved.rename(root)
    # a final.json that holds no mIoU is a one-line error
    (runs["none"] / "final.json").write_text('{"x": 1}')
    result = run("none", "--iters", "2")
    assert result.exit_code == 1 and "holds no mIoU" in result.output and "Traceback" not in result.output

    # a run another process holds is skipped, not trained twice
    import fcntl
    (runs["none"] / "final.json").unlink()
    with open(out_root / "cityscapes" / "unet_small" / "none-n2-s1.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run("none", "--iters", "2")
    assert result.exit_code == 0 and "another process is running it; skipped" in result.output, result.output
    assert not (runs["none"] / "final.json").exists()

    # a damaged file is a one-line error naming it
    (runs["cutmix"] / "config.json").write_text("{not json")
    result = run("cutmix", "--iters", "4")
    assert result.exit_code == 1 and f"cannot read {runs['cutmix'] / 'config.json'}" in result.output, result.output
    assert "Traceback" not in result.output
    (runs["cutmix"] / "config.json").write_text(json.dumps({**config, "iters": 4}))

    # a run (stopped here) with other settings is named, not resumed or replaced
    result = run("none", "--iters", "3")
    assert result.exit_code == 1 and "iters=2 (this invocation: 3)" in result.output, result.output
    assert json.loads((runs["none"] / "config.json").read_text())["iters"] == 2

    result = invoke("summarize", out_root)
    assert result.exit_code == 0, result.output
    assert f"unfinished (no final.json, left out): {runs['none']}" in result.output
    assert "| cityscapes | unet_small | cutmix | 2 | 1 |" in result.output and "| — | — |" in result.output


def fake_run(path, config, miou, n_labelled, **final):
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    (path / "split.json").write_text(json.dumps({"labelled": list(range(n_labelled)), "unlabelled": []}))
    (path / "final.json").write_text(json.dumps({"miou": miou, "iters": 40000, **final}))


def test_summary_by_hand(tmp_path):
    city = {"dataset": "cityscapes", "arch": "deeplabv2_resnet101", "reg": "cutmix", "cons_weight": 1.0}
    fake_run(tmp_path / "a", {**city, "seed": 1, "device": "cuda:0"}, 0.50, 100)
    fake_run(tmp_path / "b", {**city, "seed": 2, "device": "cuda:1"}, 0.52, 100)
    fake_run(tmp_path / "c", {**city, "reg": "none", "seed": 1}, 0.40, 100, test_miou=0.45)
    fake_run(tmp_path / "d", {**city, "reg": "none", "seed": 2, "cons_weight": 0.5}, 0.42, 100, test_miou=0.47)
    fake_run(tmp_path / "e", {**city, "seed": 1}, 0.675, 2975)
    (tmp_path / "stopped").mkdir()
    (tmp_path / "stopped" / "config.json").write_text(json.dumps(city))
    result = invoke("summarize", tmp_path, "--json", tmp_path / "rows.json")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # rows by labelled count, the baseline before CutMix; published: the paper's (CutMix 51.20 at 100, 67.68 at all)
    assert lines[2] == "| cityscapes | deeplabv2_resnet101 | none | 100 | 2 | 41.00 ± 1.41 * | 46.00 ± 1.41 | — | — |"
    assert lines[3] == "| cityscapes | deeplabv2_resnet101 | cutmix | 100 | 2 | 51.00 ± 1.41 | — | 51.20 | -0.20 |"
    assert lines[4] == "| cityscapes | deeplabv2_resnet101 | cutmix | 2975 | 1 | 67.50 | — | 67.68 | -0.18 |"
    # the device differs between repeats (allowed); a setting that differs is named
    assert "none n=100: its runs differ in cons_weight (0.5, 1.0)" in result.output
    assert f"unfinished (no final.json, left out): {tmp_path / 'stopped'}" in result.output
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows[1]["seeds"] == [1, 2] and rows[1]["published"] == 51.20 and rows[1]["varying"] == {}
    result = invoke("summarize", tmp_path, "--json", tmp_path / "rows.json")
    assert result.exit_code == 1 and "pass --overwrite" in result.output
    result = invoke("summarize", tmp_path / "stopped")
    assert result.exit_code == 1 and "no finished run" in result.output
    result = invoke("summarize", tmp_path, "--json", tmp_path / "no" / "rows.json")
    assert result.exit_code == 1 and "create it first" in result.output
    # a damaged run is named and left out; a run without split.json and all labels counts the training set
    (tmp_path / "a" / "final.json").write_text("{")
    (tmp_path / "e" / "split.json").unlink()
    (tmp_path / "e" / "config.json").write_text(json.dumps({**city, "seed": 1, "n_sup": None}))
    result = invoke("summarize", tmp_path)
    assert result.exit_code == 0 and f"warning: cannot read the run {tmp_path / 'a'} (JSONDecodeError" in result.output
    assert "| cityscapes | deeplabv2_resnet101 | cutmix | 100 | 1 | 52.00 | — | 51.20 | +0.80 |" in result.output
    assert "| cityscapes | deeplabv2_resnet101 | cutmix | 2975 | 1 | 67.50 | — | 67.68 | -0.18 |" in result.output


STAND_IN = """import json, os, signal, sys, time
from pathlib import Path
argv = [part for arg in sys.argv for part in arg.split("=", 1)]  # --out-dir=PATH too
out = Path(argv[argv.index("--out-dir") + 1])
out.mkdir()
fd = os.environ.get("SEMISUP_INHERITED_LOCK_FD")
(out / "seen.json").write_text(json.dumps({"fd": fd, "open": fd is not None and os.path.exists(f"/proc/self/fd/{fd}")}))
if "--stop" in sys.argv:  # as a training process: SIGTERM stops it after its iteration, checkpointed
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    (out / "ready").touch()
    time.sleep(60)
if os.environ.get("STAND_IN") == "signal_parent":  # as a batch system's SIGUSR1 in a run's last iteration:
    signal.signal(signal.SIGUSR1, lambda signum, frame: (out / "passed_on").touch())  # the run finishes
    os.kill(os.getppid(), signal.SIGUSR1)
    time.sleep(1)
(out / "final.json").write_text(json.dumps({"miou": 0.5, "seconds": 1.0}))
"""


@pytest.fixture
def stand_in_training(tmp_path, monkeypatch):
    """paper_tables starting a small script in place of train_seg_semisup.py."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "train_seg_semisup.py").write_text(STAND_IN)
    monkeypatch.setattr(paper_tables, "ROOT", root)


@pytest.mark.skipif(paper_tables.fcntl is None or not Path("/proc/self/fd").is_dir(),
                    reason="runs are locked on Unix only; the stand-in looks in /proc")
def test_the_training_process_gets_the_run_lock_and_its_name(tmp_path, stand_in_training):
    """The per-run lock's descriptor goes to the training process (open there), named in its environment,
    so that it keeps the descriptor out of its forked loader workers."""
    out = tmp_path / "run"
    with paper_tables.run_lock(out) as lock:
        assert paper_tables.train(out, ["--out-dir", str(out)], lock) == {"miou": 0.5, "seconds": 1.0}
        assert json.loads((out / "seen.json").read_text()) == {"fd": str(lock.fileno()), "open": True}


def test_a_stop_signal_goes_to_the_training_process(tmp_path, stand_in_training):
    """SIGTERM to paper_tables while a run trains is passed on (the run stops after its iteration,
    checkpointed); paper_tables stops with it, in one line with the training process's exit status."""
    out = tmp_path / "run"
    caught = []

    def own(signum, frame):  # this process's own handler: a signal not passed on ends here, not the test process
        caught.append(signum)

    before = signal.signal(signal.SIGTERM, own)

    def signal_when_ready():
        while not (out / "ready").exists():
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=signal_when_ready, daemon=True).start()
    try:
        with paper_tables.SignalRelay() as relay, paper_tables.run_lock(out) as lock, \
                pytest.raises(click.ClickException) as stopped:
            paper_tables.train(out, ["--out-dir", str(out), "--stop"], lock, relay)
        assert not caught and signal.getsignal(signal.SIGTERM) is own  # passed on, then handed back
    finally:
        signal.signal(signal.SIGTERM, before)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert stopped.value.message == (f"{out} was stopped by SIGTERM: run this command again to continue it "
                                     f"(log: {tmp_path / 'run.log'})")


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_run_starts_no_run_after_a_stop_signal(tmp_path, stand_in_training, monkeypatch):
    """SIGUSR1 while a run finishes (its last iteration): passed on to it, and no further run starts; the
    command stops with 128 + 10 in one line."""
    root = make_cityscapes(tmp_path / "cityscapes", n_train=4)
    out_root = tmp_path / "paper"
    monkeypatch.setenv("STAND_IN", "signal_parent")
    args = ["run", "--table", "cityscapes", "--arch", "unet_small", "--regs", "none,cutmix", "--labels", "2",
            "--seeds", "1", "--data-dir", root, "--out-root", out_root, "--", "--no-pretrained", "--iters", "2"]
    result = invoke(*args)
    runs = [out_root / "cityscapes" / "unet_small" / f"{reg}-n2-s1" for reg in ("none", "cutmix")]
    assert result.exit_code == 128 + signal.SIGUSR1, result.output
    assert result.output.strip().splitlines()[-1] == f"Error: stopped by SIGUSR1 before [2/2] {runs[1]}: run this " \
                                                      f"command again to continue"
    assert (runs[0] / "passed_on").is_file() and (runs[0] / "final.json").is_file() and not runs[1].exists()


def test_a_stop_signal_noted_before_the_training_process_started_goes_to_it(tmp_path, stand_in_training):
    out = tmp_path / "run"
    relay = paper_tables.SignalRelay()  # not entered: as if the signal came while the run was being set up
    relay.signum = signal.SIGTERM
    t0 = time.monotonic()
    with paper_tables.run_lock(out) as lock, pytest.raises(click.ClickException) as stopped:
        paper_tables.train(out, ["--out-dir", str(out), "--stop"], lock, relay)
    assert stopped.value.exit_code == 128 + signal.SIGTERM and time.monotonic() - t0 < 30  # not its 60 s
    assert relay.child is None
