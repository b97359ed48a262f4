"""End-to-end runs of the training script on a tiny synthetic set."""
import copy
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import architectures
import datapipe
import provenance
import regularizers
import train_seg_semisup
from train_seg_semisup import lr_factor

try:
    import resource
except ImportError:
    resource = None

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--synthetic-n-train", "24", "--synthetic-n-val", "6", "--n-sup", "6", "--batch-size", "2",
        "--iters", "4", "--eval-every", "2", "--eval-batch-size", "6", "--threads", "2"]


def run(args):
    return CliRunner().invoke(train_seg_semisup.main, args, catch_exceptions=False)


@pytest.mark.parametrize("reg", ["none", "cutout", "cutmix"])
def test_run_writes_config_metrics_final_checkpoint(tmp_path, reg):
    out = tmp_path / "run"
    result = run([*TINY, "--reg", reg, "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["reg"] == reg and config["iters"] == 4 and config["n_sup"] == 6
    assert config["cons_weight"] == (0.0 if reg == "none" else 1.0)
    assert config["mask_prop_range"] == {"none": None, "cutout": "0:1", "cutmix": "0.5"}[reg]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["iter"] for m in metrics] == [2, 4]
    assert all(0.0 <= m["miou"] <= 1.0 and "seconds" in m and m["sup_loss"] > 0 for m in metrics)
    if reg == "none":  # no consistency term: nothing to report, rather than a misleading 0
        assert all(m["cons_loss"] is None and m["conf_frac"] is None for m in metrics)
        assert "cons loss" not in result.output and "confident" not in result.output
    else:
        assert all(m["cons_loss"] >= 0 and 0.0 <= m["conf_frac"] <= 1.0 for m in metrics)
    final = json.loads((out / "final.json").read_text())
    assert final["iters"] == 4 and 0.0 <= final["miou"] <= 1.0 and len(final["per_class_iou"]) == 6
    assert final["miou"] == metrics[-1]["miou"]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert {"student", "teacher", "optimizer", "config", "iter"} <= set(ckpt) and ckpt["iter"] == 4


def test_option_aliases_and_precedence(tmp_path):
    out = tmp_path / "run"
    result = run([*TINY, "--reg", "cutmix", "--cons_weight", "0.5", "--mask_prop_range", "0.25", "--n_sup", "5",
                  "--lr", "0.01", "--no-aug-hflip", "--out-dir", str(out), "--iters", "1"])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["cons_weight"] == 0.5 and config["mask_prop_range"] == "0.25" and config["n_sup"] == 5
    assert config["lr"] == 0.01 and config["aug_hflip"] is False
    assert config["arch"] == "unet_small" and config["crop_size"] == [64, 64]  # from the synthetic recipe


def test_authors_option_spellings(tmp_path):
    out = tmp_path / "run"
    no_iters = TINY[: TINY.index("--iters")] + TINY[TINY.index("--iters") + 4:]  # drops --iters and --eval-every
    result = run([*no_iters, "--num_epochs", "2", "--iters_per_epoch", "3", "--boxmask_no_invert", "--out-dir",
                  str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["iters"], config["eval_every"], config["boxmask_invert"]) == (6, 3, False)
    assert [json.loads(line)["iter"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [3, 6]
    run([*TINY, "--boxmask-no-invert", "--iters", "1", "--out-dir", str(tmp_path / "b")])
    assert json.loads((tmp_path / "b" / "config.json").read_text())["boxmask_invert"] is False


def test_overwrite_replaces_a_run_but_no_other_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(train_seg_semisup.main, [*TINY, "--overwrite", "--out-dir", str(out)])
    assert result.exit_code == 1 and "not a run directory" in result.output and "Traceback" not in result.output
    assert (out / "notes.txt").read_text() == "keep me"
    run_dir = tmp_path / "run"
    assert run([*TINY, "--iters", "1", "--out-dir", str(run_dir)]).exit_code == 0
    kept = {path.name: path.read_bytes() for path in run_dir.iterdir()}
    # a bad input found after the options were parsed (a split file, weights) leaves the run to replace alone
    for args in (["--split-file", str(tmp_path / "missing.txt")], ["--weights", str(tmp_path / "mine" / "notes.txt")]):
        result = CliRunner().invoke(train_seg_semisup.main, [*TINY, *args, "--overwrite", "--out-dir", str(run_dir)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert {path.name: path.read_bytes() for path in run_dir.iterdir()} == kept
    assert run([*TINY, "--iters", "2", "--overwrite", "--out-dir", str(run_dir)]).exit_code == 0
    assert json.loads((run_dir / "final.json").read_text())["iters"] == 2


def test_resume_refuses_changed_options_and_nothing_to_do(tmp_path):
    out = tmp_path / "run"
    assert run([*TINY, "--out-dir", str(out)]).exit_code == 0
    before = (out / "metrics.jsonl").read_text()
    for args, message in [(["--lr", "0.1"], "drop --lr"), (["--iters", "4"], "give --iters above 4"),
                          (["--iters", "2"], "already trained 4 iterations")]:
        result = CliRunner().invoke(train_seg_semisup.main, ["--resume", "--out-dir", str(out), *args])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert (out / "metrics.jsonl").read_text() == before
    # stopped after the last checkpoint, before final.json (killed in the test-set evaluation): --resume makes
    # the final evaluation again and trains nothing; its metrics record was written before the checkpoint
    final = json.loads((out / "final.json").read_text())
    (out / "final.json").unlink()
    result = CliRunner().invoke(train_seg_semisup.main, ["--resume", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    again = json.loads((out / "final.json").read_text())
    assert (again["miou"], again["iters"]) == (final["miou"], 4) and again["seconds"] >= final["seconds"]
    assert (out / "metrics.jsonl").read_text() == before
    # extended to 6 and stopped after the checkpoint at 6: the 4-iteration final.json does not count as its end
    assert run(["--resume", "--iters", "6", "--out-dir", str(out)]).exit_code == 0
    six = json.loads((out / "final.json").read_text())
    (out / "final.json").write_text(json.dumps(final))  # the file of the earlier part, as a stop would leave it
    result = CliRunner().invoke(train_seg_semisup.main, ["--resume", "--iters", "6", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "final.json").read_text())["miou"] == six["miou"]
    result = CliRunner().invoke(train_seg_semisup.main, ["--resume", "--iters", "6", "--out-dir", str(out)])
    assert result.exit_code == 1 and "already trained 6 iterations and written final.json" in result.output
    before = (out / "metrics.jsonl").read_text()
    # a damaged environment.json is kept aside under a new name, not overwritten
    (out / "environment.json").write_text('{"not": "a list"}')
    (out / "final.json").unlink()
    result = CliRunner().invoke(train_seg_semisup.main, ["--resume", "--out-dir", str(out)])
    assert result.exit_code == 0 and "was not a list of records; kept as environment.damaged-" in result.output
    assert [json.loads(p.read_text()) for p in out.glob("environment.damaged-*.json")] == [{"not": "a list"}]
    assert [r["start_iter"] for r in json.loads((out / "environment.json").read_text())] == [6]
    for damaged in ("checkpoint.pt", "config.json"):
        (out / damaged).write_bytes((out / damaged).read_bytes()[:100])
        result = CliRunner().invoke(train_seg_semisup.main, ["--resume", "--iters", "6", "--out-dir", str(out)])
        assert result.exit_code == 1 and f"cannot read {out / damaged}" in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_mixing_partner_from_the_same_batch(tmp_path):
    rng = np.random.default_rng(0)
    for n in (2, 3, 7):
        batch = {"image": torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 4, 4),
                 "valid": torch.ones(n, 1, 4, 4)}
        for _ in range(20):
            partner = train_seg_semisup.pair_within(batch, rng)["image"][:, 0, 0, 0].long()
            assert sorted(partner.tolist()) == list(range(n))  # every image is someone's partner once
            assert (partner != torch.arange(n)).all()  # and never its own
    out = tmp_path / "run"
    result = run([*TINY, "--reg", "cutmix", "--mix-partner", "batch", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["mix_partner"] == "batch"


def test_refuses_existing_run_dir_and_keeps_it(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(train_seg_semisup.main, [*TINY, "--out-dir", str(out)])
    assert result.exit_code != 0 and "already exists" in result.output and "--overwrite" in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert (out / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("args, message", [
    (["--mask-prop-range", "2"], "0 <= a <= b <= 1"),
    (["--n-sup", "100"], "more than the 24 training images"),
    (["--crop-size", "a,b"], "expected one value or two"),
    (["--resume"], "--resume needs --out-dir"),
    (["--device", "nonsense"], "unknown --device 'nonsense'"),
    (["--device", "meta"], "not supported: --device meta"),
    (["--device", "cuda:7"], "--device cuda:7"),
    (["--num-epochs", "2"], "--num-epochs and --iters-per-epoch go together"),
    (["--num-epochs", "2", "--iters-per-epoch", "2"], "not both"),
    (["--mix-partner", "batch", "--batch-size", "1"], "needs at least 2"),
    (["--crop-size", "0,0"], "a crop size must be positive"),
    (["--aug-scale-range", "2,1"], "low <= high"),
    (["--aug-max-scale", "0.5"], "x>=1"),
    (["--lr", "0"], "x>0"),
    (["--aug-hvflip", "--crop-size", "24,40"], "needs a square --crop-size"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    result = CliRunner().invoke(train_seg_semisup.main, [*TINY, *args])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_seed_reproduces_and_resume_is_exact(tmp_path):
    args = [*TINY, "--reg", "cutmix", "--conf-thresh", "0"]
    run([*args, "--out-dir", str(tmp_path / "a")])
    run([*args, "--out-dir", str(tmp_path / "b")])
    run([*args, "--iters", "2", "--out-dir", str(tmp_path / "c")])
    result = run(["--resume", "--iters", "4", "--out-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    states = [torch.load(tmp_path / r / "checkpoint.pt", weights_only=False)["teacher"] for r in "abc"]
    for key in states[0]:
        torch.testing.assert_close(states[1][key], states[0][key], rtol=0, atol=0)
        torch.testing.assert_close(states[2][key], states[0][key], rtol=0, atol=0)
    metrics_c = [json.loads(line) for line in (tmp_path / "c" / "metrics.jsonl").read_text().splitlines()]
    assert [m["iter"] for m in metrics_c] == [2, 4]
    # environment.json: one record per part of the run, the code's commit and the versions in each
    records = json.loads((tmp_path / "c" / "environment.json").read_text())
    assert [r["start_iter"] for r in records] == [0, 2]
    assert all(isinstance(word, str) for word in records[1]["command"])  # this process's argv (pytest's here)
    assert records[0]["torch"] == torch.__version__ and records[0]["device"] == "cpu"
    assert {"commit", "uncommitted_changes", "numpy", "opencv", "host"} <= records[0].keys()


def iters_logged(out: Path) -> list[int]:
    return [json.loads(line)["iter"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def log(out: Path) -> list[dict]:
    """The run's metrics.jsonl records without their wall times (what an uninterrupted run must repeat)."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


IN_USE = "is in use by another training process (it holds the directory's lock); wait for that run to end"


def start_training(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "train_seg_semisup.py"), *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_lines(child: subprocess.Popen, out: Path, n: int) -> None:
    """Until the run in ``out`` has logged ``n`` lines, then pause it (SIGSTOP: alive, holding its lock)."""
    while child.poll() is None and not ((out / "metrics.jsonl").is_file() and len(iters_logged(out)) >= n):
        time.sleep(0.01)
    child.send_signal(signal.SIGSTOP)
    assert child.poll() is None, "the run ended before it was paused: give it more iterations"


def test_a_run_killed_mid_training_resumes_to_the_uninterrupted_result(tmp_path):
    """Real SIGKILLs at whatever point the run has reached, not a run stopped by --iters: --resume continues
    from the last checkpoint and ends where the uninterrupted run ends. While a training process lives
    (paused here) its run directory is locked; the loader worker of a resumed run, forked while the lock was
    held and alive for a few seconds after its parent's kill, does not keep it locked."""
    args = [*TINY, "--reg", "cutmix", "--conf-thresh", "0", "--iters", "30", "--num-workers", "1"]
    killed = tmp_path / "killed"
    child = start_training([*args, "--out-dir", str(killed)])
    try:
        wait_for_lines(child, killed, 2)
        for other in (["--resume"], [*args, "--overwrite"]):
            result = CliRunner().invoke(train_seg_semisup.main, [*other, "--out-dir", str(killed)])
            assert result.exit_code == 1 and IN_USE in result.output, result.output
    finally:
        child.kill()
        child.wait()
    child = start_training(["--resume", "--out-dir", str(killed)])  # its worker is forked under the lock
    try:
        wait_for_lines(child, killed, len(iters_logged(killed)) + 1)
    finally:
        child.kill()
        child.wait()
    result = run(["--resume", "--out-dir", str(killed)])  # at once: the orphaned worker may still be alive
    assert result.exit_code == 0, result.output
    assert run([*args, "--out-dir", str(tmp_path / "whole")]).exit_code == 0
    assert iters_logged(killed) == iters_logged(tmp_path / "whole") == list(range(2, 31, 2))
    states = [torch.load(tmp_path / r / "checkpoint.pt", weights_only=False)["teacher"] for r in ("whole", "killed")]
    for key in states[0]:
        torch.testing.assert_close(states[1][key], states[0][key], rtol=0, atol=0)
    whole, resumed = (json.loads((tmp_path / r / "final.json").read_text()) for r in ("whole", "killed"))
    assert resumed["miou"] == whole["miou"]


def test_a_stop_signal_checkpoints_the_iteration_and_resumes_to_the_uninterrupted_result(tmp_path):
    """SIGTERM to the run's whole process group, its loader worker too (as a batch system signals every
    process of a job before its time limit): the run stops after the current iteration with a checkpoint of
    it, in one line, exit status 128 + 15; the worker ignored the signal (killed, it would have failed the
    run mid-step); --resume ends where the uninterrupted run ends, log and weights."""
    args = [*TINY, "--reg", "cutmix", "--conf-thresh", "0", "--iters", "30", "--num-workers", "1"]
    stopped = tmp_path / "stopped"
    child = subprocess.Popen([sys.executable, str(ROOT / "train_seg_semisup.py"), *args, "--out-dir",
                              str(stopped)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        while child.poll() is None and not (stopped / "metrics.jsonl").is_file():
            time.sleep(0.01)
        os.killpg(child.pid, signal.SIGTERM)
    finally:
        err = child.communicate(timeout=120)[1]
    assert child.returncode == 128 + signal.SIGTERM, err
    match = re.fullmatch(rf"Error: stopped by SIGTERM after iteration (\d+) of 30, with a checkpoint: continue with "
                         rf"python train_seg_semisup.py --resume --out-dir {re.escape(str(stopped))}",
                         err.strip().splitlines()[-1])
    assert match and "Traceback" not in err, err
    assert torch.load(stopped / "checkpoint.pt", weights_only=False)["iter"] == int(match[1]) < 30
    assert not (stopped / "final.json").exists()
    assert run(["--resume", "--out-dir", str(stopped)]).exit_code == 0
    assert run([*args, "--out-dir", str(tmp_path / "whole")]).exit_code == 0

    assert log(stopped) == log(tmp_path / "whole") and [m["iter"] for m in log(stopped)] == list(range(2, 31, 2))
    states = [torch.load(out / "checkpoint.pt", weights_only=False)["teacher"] for out in (tmp_path / "whole", stopped)]
    for key in states[0]:
        torch.testing.assert_close(states[1][key], states[0][key], rtol=0, atol=0)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_a_stop_signal_while_the_run_starts_stops_it_after_its_first_iteration(tmp_path, monkeypatch):
    resolve = train_seg_semisup.resolve_config

    def signalled_while_loading(*a, **k):
        os.kill(os.getpid(), signal.SIGUSR1)  # noted (the training script's handler), not the end of the process
        return resolve(*a, **k)

    monkeypatch.setattr(train_seg_semisup, "resolve_config", signalled_while_loading)
    before = signal.getsignal(signal.SIGUSR1)
    out = tmp_path / "run"
    result = CliRunner().invoke(train_seg_semisup.main, [*TINY, "--out-dir", str(out)])
    assert result.exit_code == 128 + signal.SIGUSR1 and result.output.strip().splitlines()[-1] == (
        f"Error: stopped by SIGUSR1 after iteration 1 of 4, with a checkpoint: continue with python "
        f"train_seg_semisup.py --resume --out-dir {out}"), result.output
    assert torch.load(out / "checkpoint.pt", weights_only=False)["iter"] == 1
    assert signal.getsignal(signal.SIGUSR1) is before


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_stop_request_notes_stop_signals_while_entered():
    before = {sig: signal.getsignal(sig) for sig in train_seg_semisup.STOP_SIGNALS}
    with train_seg_semisup.StopRequest() as stop:
        assert stop.signum == 0
        os.kill(os.getpid(), signal.SIGUSR1)  # noted, not the end of this process
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        assert stop.signum == signal.SIGUSR1  # the first one's
    assert {sig: signal.getsignal(sig) for sig in before} == before
    entered = []  # in another thread nothing can be installed, and nothing is
    thread = threading.Thread(target=lambda: entered.append(train_seg_semisup.StopRequest().__enter__().previous))
    thread.start()
    thread.join()
    assert entered == [{}] and {sig: signal.getsignal(sig) for sig in before} == before


class Killed(Exception):
    pass


def test_checkpoint_every_resumes_between_evaluations_to_the_same_run(tmp_path, monkeypatch):
    """--checkpoint-every 3 with evaluations every 4: killed in the evaluation of iteration 4, the run resumes
    from the checkpoint of iteration 3 (no log line of its own) and ends as the uninterrupted run, its log
    too: the training means since the last line are in the checkpoint."""
    args = [*TINY, "--reg", "cutmix", "--conf-thresh", "0", "--iters", "6", "--eval-every", "4"]
    assert run([*args, "--out-dir", str(tmp_path / "plain")]).exit_code == 0
    assert run([*args, "--checkpoint-every", "3", "--out-dir", str(tmp_path / "whole")]).exit_code == 0
    evaluate = train_seg_semisup.run_evaluation

    def killed_at_first_evaluation(*a, **k):
        raise Killed

    out = tmp_path / "killed"
    monkeypatch.setattr(train_seg_semisup, "run_evaluation", killed_at_first_evaluation)
    with pytest.raises(Killed):
        run([*args, "--checkpoint-every", "3", "--out-dir", str(out)])
    assert torch.load(out / "checkpoint.pt", weights_only=False)["iter"] == 3
    assert not (out / "metrics.jsonl").exists()  # a checkpoint without an evaluation writes no line
    monkeypatch.setattr(train_seg_semisup, "run_evaluation", evaluate)
    result = run(["--resume", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output

    assert log(tmp_path / "killed") == log(tmp_path / "whole") == log(tmp_path / "plain")
    assert [m["iter"] for m in log(tmp_path / "plain")] == [4, 6]
    states = [torch.load(tmp_path / r / "checkpoint.pt", weights_only=False)["teacher"]
              for r in ("plain", "whole", "killed")]
    for key in states[0]:
        torch.testing.assert_close(states[1][key], states[0][key], rtol=0, atol=0)
        torch.testing.assert_close(states[2][key], states[0][key], rtol=0, atol=0)
    # --resume may change the period (where and how often it saves is not what it trains); config.json says so
    assert run(["--resume", "--iters", "8", "--checkpoint-every", "1", "--out-dir", str(out)]).exit_code == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["iters"], saved["checkpoint_every"]) == (8, 1)


def test_a_run_killed_in_its_final_evaluation_resumes_at_it(tmp_path, monkeypatch):
    """The end of training is checkpointed before the final evaluation: killed in it (or after its record was
    written), the run resumes at that evaluation, and ends as the uninterrupted run, log and scores."""
    args = [*TINY, "--reg", "cutmix", "--conf-thresh", "0"]  # 4 iterations, evaluations at 2 and at the end
    assert run([*args, "--out-dir", str(tmp_path / "whole")]).exit_code == 0
    evaluate, calls = train_seg_semisup.run_evaluation, []

    def killed_in_the_final_evaluation(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return evaluate(*a, **k)

    out = tmp_path / "killed"
    monkeypatch.setattr(train_seg_semisup, "run_evaluation", killed_in_the_final_evaluation)
    with pytest.raises(Killed):
        run([*args, "--out-dir", str(out)])
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert (ckpt["iter"], ckpt["final_pending"]) == (4, True) and iters_logged(out) == [2]
    with open(out / "metrics.jsonl", "a") as f:  # as if killed after the final record, before the last save
        f.write(json.dumps({"iter": 4, "miou": 0.0}) + "\n")
    shutil.copytree(out, tmp_path / "extended")
    monkeypatch.setattr(train_seg_semisup, "run_evaluation", evaluate)
    result = run(["--resume", "--out-dir", str(out)])
    assert result.exit_code == 0 and "1 line(s) written after the checkpoint of iteration 4" in result.output

    assert log(out) == log(tmp_path / "whole") and [m["iter"] for m in log(out)] == [2, 4]
    finals = [json.loads((d / "final.json").read_text()) for d in (tmp_path / "whole", out)]
    assert finals[0]["miou"] == finals[1]["miou"]
    assert torch.load(out / "checkpoint.pt", weights_only=False)["final_pending"] is False
    assert run(["--resume", "--out-dir", str(out)]).exit_code == 1  # finished: nothing to resume
    # extended instead (--iters 6): the evaluation it was stopped before comes first, as if it had finished
    assert run(["--resume", "--iters", "6", "--out-dir", str(tmp_path / "whole")]).exit_code == 0
    assert run(["--resume", "--iters", "6", "--out-dir", str(tmp_path / "extended")]).exit_code == 0
    assert log(tmp_path / "extended") == log(tmp_path / "whole") and [m["iter"] for m in log(out)] == [2, 4]
    assert [m["iter"] for m in log(tmp_path / "whole")] == [2, 4, 6]


def test_resume_moves_aside_the_log_lines_written_after_the_checkpoint(tmp_path):
    """Killed after an evaluation's record was appended but before its checkpoint was saved (or mid-line):
    those lines are redone by --resume, so they are kept aside and the log holds each iteration once."""
    out = tmp_path / "run"
    assert run([*TINY, "--iters", "2", "--out-dir", str(out)]).exit_code == 0
    later = json.dumps({"iter": 4, "miou": 0.5}) + "\n" + '{"iter": 6, "mi'
    with open(out / "metrics.jsonl", "a") as f:
        f.write(later)
    result = run(["--resume", "--iters", "4", "--out-dir", str(out)])
    assert result.exit_code == 0 and "warning: metrics.jsonl: 2 line(s) written after" in result.output, result.output
    assert iters_logged(out) == [2, 4]
    aside = list(out.glob("metrics.after-checkpoint-*.jsonl"))
    assert len(aside) == 1 and aside[0].read_text() == later + "\n"


@pytest.mark.skipif(train_seg_semisup.fcntl is None, reason="run directories are locked on Unix only")
def test_a_run_directory_in_use_is_refused_and_left_alone(tmp_path):
    """Another process holding the run directory's lock (a run still training into it): --resume and
    --overwrite are refused in one line and change nothing; once it is released both work."""
    out = tmp_path / "run"
    assert run([*TINY, "--iters", "2", "--out-dir", str(out)]).exit_code == 0
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    other = os.open(out, os.O_RDONLY)  # another open file description: to flock, another process
    try:
        train_seg_semisup.fcntl.flock(other, train_seg_semisup.fcntl.LOCK_EX | train_seg_semisup.fcntl.LOCK_NB)
        for args in (["--resume", "--iters", "4"], [*TINY, "--overwrite"]):
            result = CliRunner().invoke(train_seg_semisup.main, [*args, "--out-dir", str(out)])
            assert result.exit_code == 1 and "Traceback" not in result.output, result.output
            assert result.output == (f"Error: run directory {out} is in use by another training process (it holds "
                                     f"the directory's lock); wait for that run to end, or choose another "
                                     f"--out-dir\n")
            assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    finally:
        os.close(other)
    assert run(["--resume", "--iters", "4", "--out-dir", str(out)]).exit_code == 0
    assert run([*TINY, "--iters", "1", "--overwrite", "--out-dir", str(out)]).exit_code == 0
    assert json.loads((out / "final.json").read_text())["iters"] == 1


@pytest.mark.skipif(train_seg_semisup.fcntl is None, reason="run directories are locked on Unix only")
def test_a_run_started_meanwhile_in_the_same_new_directory_is_left_alone(tmp_path, monkeypatch):
    """Two new runs into one --out-dir that did not exist when each checked it: the second to create it finds
    the first's files (or its lock) and stops, instead of emptying them."""
    out = tmp_path / "run"
    make = train_seg_semisup.make_out_dir

    def another_run_started_first(path):
        make(path)
        (path / "config.json").write_text("{}")  # the other run's files, written while this one read its data

    monkeypatch.setattr(train_seg_semisup, "make_out_dir", another_run_started_first)
    result = CliRunner().invoke(train_seg_semisup.main, [*TINY, "--out-dir", str(out)])
    assert result.exit_code == 1 and "already exists" in result.output, result.output
    assert [path.name for path in out.iterdir()] == ["config.json"]
    shutil.rmtree(out)

    def another_run_is_training_there(path):
        make(path)
        holder.append(os.open(path, os.O_RDONLY))
        train_seg_semisup.fcntl.flock(holder[0], train_seg_semisup.fcntl.LOCK_EX)

    holder = []
    monkeypatch.setattr(train_seg_semisup, "make_out_dir", another_run_is_training_there)
    try:
        result = CliRunner().invoke(train_seg_semisup.main, [*TINY, "--out-dir", str(out)])
    finally:
        for fd in holder:
            os.close(fd)
    assert result.exit_code == 1 and IN_USE in result.output and not any(out.iterdir()), result.output


def started_then_asleep(started) -> None:
    started.set()
    time.sleep(60)


@pytest.mark.skipif(train_seg_semisup.fcntl is None or "fork" not in multiprocessing.get_all_start_methods(),
                    reason="flock and fork (Unix)")
def test_a_forked_worker_does_not_keep_the_run_directory_locked(tmp_path):
    """A DataLoader worker forked while the lock is held shares the locked open file unless it closes it:
    after a kill -9 of the training process it would keep the run locked until it notices its parent died."""
    fork = multiprocessing.get_context("fork")
    started = fork.Event()
    with train_seg_semisup.run_dir_lock(tmp_path):
        worker = fork.Process(target=started_then_asleep, args=(started,))
        worker.start()
        assert started.wait(30)  # the worker runs (what is done at fork in the child is done)
    try:
        with train_seg_semisup.run_dir_lock(tmp_path):  # the training process let go; the live worker holds nothing
            pass
    finally:
        worker.kill()
        worker.join()


def test_a_lock_inherited_from_paper_tables_is_kept_out_of_forked_workers(tmp_path, monkeypatch):
    """experiments/paper_tables.py passes its per-run lock's descriptor to the training process and names it
    in the environment: the script adds it to the descriptors its forked workers close, and takes the name
    out of the environment its own children get (where that number would be another file)."""
    fd = os.open(tmp_path, os.O_RDONLY)
    monkeypatch.setenv(train_seg_semisup.INHERITED_LOCK_ENV, str(fd))
    try:
        result = CliRunner().invoke(train_seg_semisup.main, [*TINY, "--resume", "--out-dir", str(tmp_path / "none")])
        assert result.exit_code == 1  # no run there: the script stopped, having read its environment first
        assert fd in train_seg_semisup.LOCK_FDS and train_seg_semisup.INHERITED_LOCK_ENV not in os.environ
    finally:
        train_seg_semisup.LOCK_FDS.discard(fd)
        os.close(fd)
    monkeypatch.setenv(train_seg_semisup.INHERITED_LOCK_ENV, "123456")  # not open here: ignored
    CliRunner().invoke(train_seg_semisup.main, ["--resume", "--out-dir", str(tmp_path / "none")])
    assert 123456 not in train_seg_semisup.LOCK_FDS


def test_code_version_names_the_commit_and_uncommitted_changes(tmp_path):
    assert provenance.code_version(tmp_path) == {"commit": None, "uncommitted_changes": None}
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "a.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "a"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    (tmp_path / "new.txt").write_text("untracked files are not changes to the code\n")
    assert provenance.code_version(tmp_path) == {"commit": head, "uncommitted_changes": False}
    (tmp_path / "a.py").write_text("x = 2\n")
    assert provenance.code_version(tmp_path) == {"commit": head, "uncommitted_changes": True}


def with_dropout(monkeypatch):
    """Networks built by the script get dropout on their output (as DeepLab v3+, PSPNet and the
    DenseNet U-Net have inside): its masks come from the global torch RNG, not the loop's generators."""
    build = architectures.build_arch

    def build_with_dropout(*args, **kwargs):
        net = build(*args, **kwargs)
        net.register_forward_hook(lambda module, inputs, out: torch.nn.functional.dropout(out, 0.5, module.training))
        return net

    monkeypatch.setattr(train_seg_semisup.architectures, "build_arch", build_with_dropout)


def test_dropout_networks_resume_exactly_and_evaluations_do_not_change_training(tmp_path, monkeypatch):
    with_dropout(monkeypatch)
    args = [*TINY, "--reg", "cutmix", "--conf-thresh", "0"]
    run([*args, "--out-dir", str(tmp_path / "a")])
    run([*args, "--eval-every", "0", "--out-dir", str(tmp_path / "b")])
    run([*args, "--iters", "2", "--out-dir", str(tmp_path / "c")])
    assert run(["--resume", "--iters", "4", "--out-dir", str(tmp_path / "c")]).exit_code == 0
    states = [torch.load(tmp_path / r / "checkpoint.pt", weights_only=False)["teacher"] for r in "abc"]
    for key in states[0]:
        torch.testing.assert_close(states[1][key], states[0][key], rtol=0, atol=0)
        torch.testing.assert_close(states[2][key], states[0][key], rtol=0, atol=0)


def test_zero_iterations_evaluates_saved_weights_as_the_run_did(tmp_path):
    run_dir, eval_dir = tmp_path / "run", tmp_path / "eval"
    assert run([*TINY, "--save-model", "--out-dir", str(run_dir)]).exit_code == 0
    for weights in ("model.pt", "checkpoint.pt"):  # the final teacher, either file
        result = run([*TINY, "--iters", "0", "--weights", str(run_dir / weights), "--save-preds", "--overwrite",
                      "--out-dir", str(eval_dir)])
        assert result.exit_code == 0, result.output
        trained, evaluated = (json.loads((d / "final.json").read_text()) for d in (run_dir, eval_dir))
        assert evaluated["iters"] == 0 and evaluated["miou"] == trained["miou"]
        assert evaluated["per_class_iou"] == trained["per_class_iou"]
        assert len(list((eval_dir / "preds").glob("*.png"))) == 6
        record, = (json.loads(line) for line in (eval_dir / "metrics.jsonl").read_text().splitlines())
        assert (record["sup_loss"], record["cons_loss"], record["conf_frac"]) == (None, None, None)  # no step ran


def test_pi_model_and_saved_outputs(tmp_path):
    out = tmp_path / "run"
    result = run([*TINY, "--model", "pi", "--save-model", "--save-preds", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "model.pt").is_file() and len(list((out / "preds").glob("*.png"))) == 6


def test_weights_round_trip_and_weight_errors(tmp_path):
    first = tmp_path / "first"
    assert run([*TINY, "--reg", "none", "--save-model", "--out-dir", str(first)]).exit_code == 0
    second = tmp_path / "second"
    result = run([*TINY, "--reg", "none", "--weights", str(first / "model.pt"), "--iters", "1",
                  "--out-dir", str(second)])
    assert result.exit_code == 0, result.output
    for args, message in [(["--pretrained"], "unet_small has no pretrained weights"),
                          (["--weights", str(tmp_path / "missing.pt")], "missing.pt")]:
        result = CliRunner().invoke(train_seg_semisup.main, [*TINY, *args, "--out-dir", str(tmp_path / "x")])
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_pi_model_student_keeps_training_mode_with_eval_teacher_bn(tmp_path):
    out = tmp_path / "run"
    result = run([*TINY, "--model", "pi", "--teacher-bn-mode", "eval", "--iters", "2", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    # BatchNorm running statistics move only in train mode: the student (= teacher) trained in train mode
    assert ckpt["student"]["enc.0.0.1.num_batches_tracked"].item() > 0


def test_weight_updates_on_one_cpu_thread_change_nothing_and_restore_the_thread_count():
    """Adam/SGD and the EMA run on one CPU thread inside the loop (a speed choice): the weights must come
    out bit for bit as with every thread, and the thread count must come back, even after an error."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        net = architectures.build_arch("unet_small", 3)
        x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
        for kind in ("adam", "sgd"):
            cfg = {"optimizer": kind, "lr": 1e-2, "weight_decay": 1e-4, "pretrained_lr_scale": 0.1,
                   "momentum": 0.9, "nesterov": True}
            outcomes = []
            for one_thread in (False, True):
                student = copy.deepcopy(net)
                mean_teacher = regularizers.MeanTeacher(student, 0.9)
                optimizer = train_seg_semisup.make_optimizer(cfg, student)
                assert optimizer.defaults["fused"]  # the loop's optimizer: torch's fused CPU kernel
                for _ in range(3):
                    optimizer.zero_grad()
                    torch.nn.functional.cross_entropy(student(x), y).backward()
                    if one_thread:
                        with train_seg_semisup.one_cpu_thread(torch.device("cpu")):
                            assert torch.get_num_threads() == 1
                            optimizer.step()
                            mean_teacher.update(student)
                    else:
                        optimizer.step()
                        mean_teacher.update(student)
                outcomes.append([*student.state_dict().values(), *mean_teacher.teacher.state_dict().values()])
            assert all(torch.equal(a, b) for a, b in zip(*outcomes, strict=True)), kind
            assert not torch.equal(outcomes[0][0], net.state_dict()[next(iter(net.state_dict()))])  # it trained
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError), train_seg_semisup.one_cpu_thread(torch.device("cpu")):
            raise RuntimeError
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


FAULTS_PER_STEP = """
import resource, sys, torch
import train_seg_semisup
if sys.argv[1] == "keep":
    assert train_seg_semisup.keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):  # warm-up: the heap grows to the step's size
    x = torch.ones(2 << 20); y = torch.ones(16 << 20); del x, y
before = faults()
for _ in range(20):  # a 'step': an 8 MiB and a 64 MiB activation, then freed
    x = torch.ones(2 << 20); y = torch.ones(16 << 20); del x, y
print((faults() - before) / 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or resource is None, reason="glibc malloc (Linux)")
def test_keep_freed_memory_removes_the_page_faults_of_each_step():
    per_step = {mode: float(subprocess.run([sys.executable, "-c", FAULTS_PER_STEP, mode], capture_output=True,
                                           text=True, check=True, cwd=ROOT).stdout)
                for mode in ("default", "keep")}
    assert per_step["default"] > 10_000  # the 64 MiB block (16,384 pages) is faulted in again every step
    assert per_step["keep"] < per_step["default"] / 5  # reused (at most the odd step grows the heap once more)


def test_keep_freed_memory_switch(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(train_seg_semisup, "keep_freed_memory", lambda: calls.append(1) or True)
    for args, keep in (([], True), (["--no-keep-freed-memory"], False)):
        calls.clear()
        result = run([*TINY, "--iters", "1", *args, "--out-dir", str(tmp_path / str(keep))])
        assert result.exit_code == 0, result.output
        assert json.loads((tmp_path / str(keep) / "config.json").read_text())["keep_freed_memory"] is keep
        assert calls == ([1] if keep else [])


def test_no_fused_optimizer_selects_the_multi_tensor_path(tmp_path, monkeypatch):
    made = []
    real = train_seg_semisup.make_optimizer
    monkeypatch.setattr(train_seg_semisup, "make_optimizer", lambda cfg, net: made.append(real(cfg, net)) or made[-1])
    for args, fused in (([], True), (["--no-fused-optimizer"], False)):
        out = tmp_path / f"run{fused}"
        result = run([*TINY, "--iters", "2", *args, "--out-dir", str(out)])
        assert result.exit_code == 0, result.output
        assert json.loads((out / "config.json").read_text())["fused_optimizer"] is fused
        assert bool(made[-1].defaults["fused"]) is fused
    # both paths compute the same Adam update, up to float32 rounding
    torch.manual_seed(0)
    net = architectures.build_arch("unet_small", 3)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    states = []
    for fused in (True, False):
        student = copy.deepcopy(net)
        optimizer = real({"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "pretrained_lr_scale": 0.1,
                          "fused_optimizer": fused}, student)
        for _ in range(3):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(student(x), y).backward()
            optimizer.step()
        states.append(student.state_dict())
    moved = [k for k in states[0] if not torch.equal(states[0][k], net.state_dict()[k])]
    assert moved
    for key in moved:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("script, args, message", [
    ("train_seg_semisup", ["--lr", "0"], "0.0 is not in the range x>0"),
    ("train_seg_semisup", ["--bogus"], "No such option '--bogus'"),
    ("toy2d", ["train", "--epochs", "x"], "'x' is not a valid integer"),
    ("prepare_data", ["splits"], "Missing argument 'PICKLE_PATH'"),
    ("patch_distances", ["maps", "--patch-size", "x"], "'x' is not a valid integer"),
])
def test_usage_errors_are_one_line_too(script, args, message):
    module = __import__(script)
    command = getattr(module, "main", None) or module.cli
    result = CliRunner().invoke(command, args)
    assert result.exit_code == 2 and result.output.startswith("Error: "), result.output
    assert len(result.output.strip().splitlines()) == 1 and message in result.output, result.output


def test_teacher_is_the_moving_average_of_the_student_after_each_step(tmp_path):
    """One step from a known initialisation: teacher = α·init + (1 − α)·student for every float entry of the
    state (BatchNorm statistics too: without a regularizer the teacher never runs in train mode)."""
    out = tmp_path / "run"
    result = run([*TINY, "--reg", "none", "--iters", "1", "--seed", "3", "--teacher-alpha", "0.9",
                  "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    torch.manual_seed(3)  # as the script does: the global RNG initialises the weights
    init = architectures.build_arch(config["arch"], config["num_classes"], pretrained=config["pretrained"],
                                    freeze_bn=config["freeze_bn"]).state_dict()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    student, teacher = ckpt["student"], ckpt["teacher"]
    moved = [k for k, v in init.items() if v.is_floating_point() and not torch.equal(teacher[k], v)]
    assert len(moved) > len([v for v in init.values() if v.is_floating_point()]) // 2  # the teacher learnt
    for key, value in init.items():
        if value.is_floating_point():
            torch.testing.assert_close(teacher[key], 0.9 * value + 0.1 * student[key])
        else:  # BatchNorm's num_batches_tracked: copied from the student
            assert torch.equal(teacher[key], student[key]) and student[key].item() == 1


def test_authors_interpolation_reaches_the_loaders(tmp_path):
    """--aug-authors-interp is saved and changes what trains (nearest-neighbour labelled images), nothing else."""
    losses = {}
    for name, extra in (("off", []), ("on", ["--aug-authors-interp", "--aug-max-scale", "1.3"]),
                        ("scale", ["--aug-max-scale", "1.3"])):
        out = tmp_path / name
        assert run([*TINY, "--reg", "none", "--out-dir", str(out), *extra]).exit_code == 0
        losses[name] = [m["sup_loss"] for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())]
        assert json.loads((out / "config.json").read_text())["aug_authors_interp"] is (name == "on")
    assert losses["on"] != losses["scale"]  # the same geometry, other interpolation


def test_lr_schedules_by_hand():
    assert [lr_factor("none", it, 100) for it in (0, 50, 99)] == [1.0, 1.0, 1.0]
    # stepped: ×0.1 from half and from three quarters of training on (default), or at given iterations
    assert [lr_factor("stepped", it, 100) for it in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])
    assert [lr_factor("stepped", it, 100, milestones=(20, 30), gamma=0.5) for it in (19, 20, 29, 30)] == [
        1.0, 0.5, 0.5, 0.25]
    assert lr_factor("cosine", 0, 100) == 1.0 and lr_factor("cosine", 50, 100) == pytest.approx(0.5)
    assert lr_factor("cosine", 25, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor("poly", 0, 100) == 1.0 and lr_factor("poly", 75, 100) == pytest.approx(0.25 ** 0.9)
    assert lr_factor("poly", 75, 100, power=2.0) == pytest.approx(0.0625)


def test_lr_schedule_options_reach_the_optimizer(tmp_path):
    """The authors' --lr_step_epochs counts epochs of --iters-per-epoch iterations; the lr of each iteration is
    what the schedule says (checkpointed optimizer: the last iteration's lr)."""
    out = tmp_path / "stepped"
    args = [*TINY[:8], "--eval-batch-size", "6", "--threads", "2", "--reg", "none", "--num_epochs", "3",
            "--iters_per_epoch", "2", "--lr_sched", "stepped", "--lr_step_epochs", "[2]", "--lr_step_gamma", "0.5",
            "--lr", "0.01", "--out-dir", str(out)]
    result = run(args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["lr_milestones"] == [4] and config["lr_step_gamma"] == 0.5 and config["iters"] == 6
    lrs = [g["lr"] for g in torch.load(out / "checkpoint.pt", weights_only=False)["optimizer"]["param_groups"]]
    assert lrs == pytest.approx([0.01 * 0.5])  # the last iteration (5) is past the one milestone (½, ¾: 0.25)
    out = tmp_path / "poly"
    result = run([*TINY, "--reg", "none", "--lr-sched", "poly", "--lr-poly-power", "2", "--lr", "0.01",
                  "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    lrs = [g["lr"] for g in torch.load(out / "checkpoint.pt", weights_only=False)["optimizer"]["param_groups"]]
    assert lrs == pytest.approx([0.01 * (1 - 3 / 4) ** 2])


@pytest.mark.parametrize("args, message", [
    (["--lr-milestones", "2"], "--lr-milestones sets the stepped schedule, but --lr-sched is none"),
    (["--lr-sched", "cosine", "--lr-poly-power", "2"], "--lr-poly-power sets the poly schedule"),
    (["--lr-sched", "stepped", "--lr-milestones", "2,9"], "must lie between 0 and --iters 4"),
    (["--lr-sched", "stepped", "--lr-step-epochs", "1"], "--lr-step-epochs counts epochs of --iters-per-epoch"),
    (["--lr-sched", "stepped", "--lr-milestones", "3,2"], "milestones must be positive and increasing"),
    (["--lr-sched", "stepped", "--lr-milestones", "a"], "expected milestones as comma-separated integers"),
    (["--num-epochs", "2", "--iters-per-epoch", "2", "--lr-step-epochs", "1"],
     "--lr-step-epochs sets the stepped schedule"),
    (["--num-epochs", "2", "--iters-per-epoch", "2", "--lr-sched", "stepped", "--lr-step-epochs", "2"],
     "--lr-step-epochs 2 must lie inside the run's 2 epochs"),
    (["--fill-holes-padded"], "--fill-holes-padded says where --bin-fill-holes fills holes, which is off"),
    (["--aug-authors-interp"], "--aug-authors-interp is the interpolation of the authors' rotate-and-scale crop"),
    (["--aug-authors-interp", "--aug-scale-hung"], "not with the Hung scale"),
])
def test_schedule_and_evaluation_option_errors(tmp_path, args, message):
    base = [*TINY[:8], *TINY[12:]] if "--num-epochs" in args else TINY  # epochs replace --iters/--eval-every
    result = CliRunner().invoke(train_seg_semisup.main, [*base, *args, "--out-dir", str(tmp_path / "run")])
    lines = result.output.strip().splitlines()
    assert result.exit_code in (1, 2) and len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "run").exists()


def test_freeze_bn_affine_trains_statistics_not_weights(tmp_path):
    """--freeze-bn-affine (the authors' DeepLab v2 with --no-freeze-bn): BatchNorm statistics move, its weights and
    biases keep their initial values; the convolutions still train."""
    out = tmp_path / "run"
    result = run([*TINY, "--reg", "none", "--no-freeze-bn", "--freeze-bn-affine", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    torch.manual_seed(config["seed"])  # the run's initialisation
    start = architectures.build_arch("unet_small", 6, freeze_bn=False).state_dict()
    end = torch.load(out / "checkpoint.pt", weights_only=False)["student"]
    bn = [k.rsplit(".", 1)[0] for k in start if k.endswith("running_mean")]
    assert bn
    for layer in bn:
        torch.testing.assert_close(end[f"{layer}.weight"], start[f"{layer}.weight"], rtol=0, atol=0)
        torch.testing.assert_close(end[f"{layer}.bias"], start[f"{layer}.bias"], rtol=0, atol=0)
    assert any(not torch.equal(end[f"{layer}.running_mean"], start[f"{layer}.running_mean"]) for layer in bn)
    convs = [k for k in start if k.endswith(".weight") and start[k].dim() == 4]
    assert any(not torch.equal(end[k], start[k]) for k in convs)


def test_authors_split_with_a_hold_out_saves_its_resolved_seed(tmp_path):
    out = tmp_path / "run"
    result = run([*TINY, "--reg", "none", "--authors-split", "--n-val", "3", "--split-seed", "7", "--out-dir",
                  str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["val_seed"] == 131  # the authors' default, resolved
    expected = datapipe.authors_split(24, 6, 7, n_val=3, val_seed=131)
    assert json.loads((out / "split.json").read_text()) == expected.as_dict()
    assert json.loads((out / "final.json").read_text())["eval_set"] == "held_out"



def test_overwrite_and_lock_errors_on_the_file_system_are_one_line(tmp_path, monkeypatch):
    """A run directory that cannot be opened, or a file --overwrite cannot delete: one line, no traceback."""
    with pytest.raises(train_seg_semisup.ConfigError, match="cannot open the run directory .*missing"):
        with train_seg_semisup.run_dir_lock(tmp_path / "missing"):
            pass
    out = tmp_path / "run"
    assert run([*TINY, "--iters", "1", "--out-dir", str(out)]).exit_code == 0

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "unlink", refuse)
    result = CliRunner().invoke(train_seg_semisup.main, [*TINY, "--iters", "1", "--overwrite", "--out-dir", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.startswith("Error: --overwrite: cannot delete ") and "Permission denied" in result.output
    assert len(result.output.splitlines()) == 1
