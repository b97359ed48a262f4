"""Training in several processes (``--processes N`` or ``torchrun``): two Gloo processes on the CPU against one."""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import datapipe
import train_seg_semisup

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--synthetic-n-train", "24", "--synthetic-n-val", "6", "--n-sup", "6", "--batch-size", "4",
        "--eval-batch-size", "3", "--threads", "1", "--device", "cpu"]


def launch(args, processes: int = 1, torchrun: bool = False):
    """The training script in a subprocess; ``processes`` > 1: started by ``--processes`` or by torchrun."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(ROOT / "train_seg_semisup.py")
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               script, *args]
    else:
        cmd = [sys.executable, script, *args, *(["--processes", str(processes)] if processes > 1 else [])]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def float_state(path: Path) -> dict:
    return {k: v.double() for k, v in torch.load(path, weights_only=False).items() if v.is_floating_point()}


def test_split_stream_is_the_single_process_stream():
    """Two processes with batches of 3 draw, in rank order, exactly one process's batches of 6."""
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    single = take(datapipe.StreamSampler(7, seed=3, stream=1), 30)
    shares = [take(datapipe.StreamSampler(7, seed=3, stream=1, rank=r, world=2, batch_size=3), 15) for r in (0, 1)]
    merged = [pair for t in range(5) for r in (0, 1) for pair in shares[r][3 * t:3 * t + 3]]
    assert merged == single
    # a process restarted after 6 of its draws (two of its batches) continues its share exactly
    restarted = take(datapipe.StreamSampler(7, seed=3, stream=1, start=6, rank=1, world=2, batch_size=3), 9)
    assert restarted == shares[1][6:]
    with pytest.raises(ValueError, match="rank 2 outside"):
        datapipe.StreamSampler(7, seed=0, stream=0, rank=2, world=2)


def test_two_processes_train_what_one_process_trains(tmp_path):
    """Supervised, BatchNorm frozen: 2 processes × 2 images = 1 process × 4 images, up to float rounding —
    the same images and augmentations, the same loss normalisation, averaged gradients; the sharded
    evaluation sums the same confusion matrix."""
    args = [*TINY, "--reg", "none", "--freeze-bn", "--iters", "12", "--eval-every", "6", "--lr", "3e-3",
            "--save-model"]
    runs = {}
    for n, torchrun in ((1, False), (2, False), ("torchrun", True)):
        out = tmp_path / f"p{n}"
        proc = launch([*args, "--out-dir", str(out)], 2 if torchrun else n, torchrun)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[n] = out
    one, two = float_state(runs[1] / "model.pt"), float_state(runs[2] / "model.pt")
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-5
    by_torchrun = float_state(runs["torchrun"] / "model.pt")  # the same processes, started by torchrun
    assert all(torch.equal(two[k], by_torchrun[k]) for k in two)
    m1, m2 = ([json.loads(line) for line in (runs[n] / "metrics.jsonl").read_text().splitlines()] for n in (1, 2))
    assert [m["iter"] for m in m2] == [6, 12]
    for a, b in zip(m1, m2, strict=True):
        assert b["sup_loss"] == pytest.approx(a["sup_loss"], rel=1e-5)
        assert b["per_class_iou"] == pytest.approx(a["per_class_iou"], abs=1e-3)
    final = json.loads((runs[2] / "final.json").read_text())
    assert 0.0 < final["miou"] <= 1.0 and final["miou"] == m2[-1]["miou"]
    assert json.loads((runs[2] / "config.json").read_text())["processes"] == 2
    # the sharded evaluation of a network = one process's evaluation of it (exactly: integer counts)
    scores = {}
    for n in (1, 2):
        out = tmp_path / f"eval{n}"
        proc = launch([*TINY, "--reg", "none", "--iters", "0", "--weights", str(runs[2] / "model.pt"),
                       "--out-dir", str(out)], n)
        assert proc.returncode == 0, proc.stderr[-3000:]
        scores[n] = json.loads((out / "final.json").read_text())
    assert scores[2]["per_class_iou"] == scores[1]["per_class_iou"] and scores[2]["miou"] == final["miou"]


def test_two_process_cutmix_resumes_exactly(tmp_path):
    """CutMix in 2 processes (a mask stream each), stopped after 2 iterations and resumed to 4, ends with the
    weights of the uninterrupted run: the checkpoint holds every process's random streams."""
    args = [*TINY, "--reg", "cutmix", "--eval-every", "2"]
    straight, parted = tmp_path / "straight", tmp_path / "parted"
    assert launch([*args, "--iters", "4", "--out-dir", str(straight)], 2).returncode == 0
    assert launch([*args, "--iters", "2", "--out-dir", str(parted)], 2).returncode == 0
    ckpt = torch.load(parted / "checkpoint.pt", weights_only=False)
    assert len(ckpt["mask_rng"]) == 2 and ckpt["mask_rng"][0] != ckpt["mask_rng"][1]
    proc = launch(["--resume", "--out-dir", str(parted), "--iters", "4"], 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(parted / "checkpoint.pt", weights_only=False)
    for key in ("student", "teacher"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    # --resume starts as many processes as the run had; it refuses another number, in one line
    for n in (1, 3):
        proc = launch(["--resume", "--out-dir", str(parted), "--iters", "6", "--processes", str(n)])
        assert proc.returncode == 1 and proc.stderr.strip() == (
            f"Error: --resume: the run in {parted} trained in 2 process(es); continue it with as many "
            f"(--processes 2)")


def process_of_rank(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of the launcher's training process of ``rank`` (Linux: read from /proc)."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    if not children.is_file():
        pytest.skip("needs /proc/PID/task/PID/children (Linux)")
    for pid in children.read_text().split():
        if f"RANK={rank}" in Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0"):
            return int(pid)
    raise AssertionError(f"no process of rank {rank}")


def stop_line(signame: str, out: Path, iters: int) -> re.Pattern:
    return re.compile(rf"Error: stopped by {signame} after iteration (\d+) of {iters}, with a checkpoint: continue "
                      rf"with python train_seg_semisup.py --resume --out-dir {re.escape(str(out))}")


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="POSIX signals")
def test_two_processes_stopped_by_a_signal_to_one_stop_together_and_resume_to_the_same_run(tmp_path):
    """2 processes, one evaluation at the end: SIGUSR1 to process 1 alone (a batch system's warning) stops both
    after the same iteration, with a checkpoint, in one line and exit status 128 + 10; resumed, they end with
    the uninterrupted run's weights and its one log line, whose training means span the stop: each process's
    sums since the last line are in the checkpoint."""
    args = [*TINY, "--reg", "cutmix", "--iters", "16", "--eval-every", "0", "--checkpoint-every", "2"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert launch([*args, "--out-dir", str(straight)], 2).returncode == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, str(ROOT / "train_seg_semisup.py"), *args, "--processes", "2",
                                 "--out-dir", str(stopped)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
    try:
        while launcher.poll() is None and not (stopped / "checkpoint.pt").is_file():
            time.sleep(0.01)
        os.kill(process_of_rank(launcher, 1), signal.SIGUSR1)
    finally:
        err = launcher.communicate(timeout=60)[1]
    assert launcher.returncode == 128 + signal.SIGUSR1 and not (stopped / "final.json").exists(), err
    lines = [line for line in err.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and (match := stop_line("SIGUSR1", stopped, 16).fullmatch(lines[0])), err
    ckpt = torch.load(stopped / "checkpoint.pt", weights_only=False)
    assert ckpt["iter"] == int(match[1]) and 0 < ckpt["iter"] < 16 and len(ckpt["running"]["sums"]) == 2
    proc = launch(["--resume", "--out-dir", str(stopped)], 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(straight / "checkpoint.pt", weights_only=False)
    b = torch.load(stopped / "checkpoint.pt", weights_only=False)
    for key in ("student", "teacher"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    logs = [[{k: v for k, v in json.loads(line).items() if k != "seconds"}
             for line in (out / "metrics.jsonl").read_text().splitlines()] for out in (straight, stopped)]
    assert logs[0] == logs[1] and [m["iter"] for m in logs[0]] == [16]


@pytest.mark.skipif(train_seg_semisup.fcntl is None, reason="run directories are locked on Unix only")
def test_a_running_two_process_run_holds_its_directory(tmp_path):
    """While 2 processes train into a run directory, a --resume of it is refused in one line. SIGTERM to the
    launcher is passed on: they stop after the same iteration, with a checkpoint, in one line; then the
    directory is free."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, str(ROOT / "train_seg_semisup.py"), *TINY, "--iters", "100000",
                                 "--eval-every", "0", "--checkpoint-every", "1", "--processes", "2", "--out-dir",
                                 str(out)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    try:
        while launcher.poll() is None and not (out / "checkpoint.pt").is_file():
            time.sleep(0.01)
        proc = launch(["--resume", "--out-dir", str(out)])
        assert proc.returncode == 1 and proc.stderr == (
            f"Error: run directory {out} is in use by another training process (it holds the directory's lock); "
            f"wait for that run to end, or choose another --out-dir\n"), proc.stderr
        assert launcher.poll() is None  # still training, undisturbed
    finally:
        launcher.send_signal(signal.SIGTERM)  # passed on: the processes stop after their iteration
        err = launcher.communicate(timeout=60)[1]
    assert launcher.returncode == 128 + signal.SIGTERM
    lines = [line for line in err.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and (match := stop_line("SIGTERM", out, 100000).fullmatch(lines[0])), err
    assert torch.load(out / "checkpoint.pt", weights_only=False)["iter"] == int(match[1])
    with train_seg_semisup.run_dir_lock(out):
        pass


def test_an_error_of_every_process_is_one_line(tmp_path):
    proc = launch([*TINY, "--batch-size", "3", "--iters", "1", "--out-dir", str(tmp_path / "run")], 2)
    assert proc.returncode == 1
    assert proc.stderr == ("Error: --batch-size 3 is the whole batch, split between 2 processes; give a "
                           "multiple of 2\n")
    assert not (tmp_path / "run").exists()
    # inside torchrun (even of one process) the script starts no processes of its own
    proc = launch([*TINY, "--processes", "2", "--iters", "1", "--out-dir", str(tmp_path / "run")], 1, torchrun=True)
    assert proc.returncode != 0
    assert "Error: --processes 2 differs from the 1 process(es) that torchrun started; drop --processes" in proc.stderr


def test_each_process_uses_the_gpu_of_its_local_rank():
    procs = train_seg_semisup.Processes({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    assert not procs.main and procs.device("cpu") == torch.device("cpu")
    with pytest.raises(train_seg_semisup.ConfigError, match="each uses the GPU of its local rank; give --device cuda"):
        procs.device("cuda:0")
    single = train_seg_semisup.Processes({})
    assert single.main and single.world == 1 and single.device("cpu") == torch.device("cpu")


# ----------------------------------------------------------------------------- the launcher, on a stand-in script

FAKE = '''import os, signal, sys, time
rank = int(os.environ["RANK"])
print(f"threads {os.environ['OMP_NUM_THREADS']} world {os.environ['WORLD_SIZE']}", file=sys.stderr, flush=True)
for _ in range(3):
    print("every process, three times", file=sys.stderr, flush=True)
if rank == 1:
    print("only process 1", file=sys.stderr, flush=True)
mode = sys.argv[1]
if mode == "fail" and rank == 1:
    sys.exit(3)
if mode == "kill" and rank == 1:
    os.kill(os.getpid(), signal.SIGKILL)


stopping = []


def stop(signum, frame):  # as a training process stops: after its iteration, with status 128 + the signal
    if stopping:  # noted once
        return
    stopping.append(signum)
    print(f"process {rank} stopping on {signal.Signals(signum).name}", file=sys.stderr, flush=True)
    time.sleep(0.5)
    sys.exit(128 + signum)


if mode in ("stop", "one_stops"):
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, stop)
if mode == "one_stops" and rank == 1:
    time.sleep(1)
    stop(signal.SIGTERM, None)  # as a batch system's signal to this process alone
if mode == "finish":  # signalled in its last iteration: it finishes the run
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
if mode == "stuck":  # notes every signal, never ends
    signal.signal(signal.SIGTERM, lambda signum, frame: print(f"process {rank} got SIGTERM", file=sys.stderr,
                                                               flush=True))
if mode == "fail_stopping" and rank == 1:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "fail_stopping" and rank == 0:  # its checkpoint cannot be written, say
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
if mode != "ok":
    time.sleep(60)  # waits as a process waits for a peer that is gone; the launcher must stop it
'''


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """``launch_processes`` starting a small script instead of the training script."""
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    monkeypatch.setattr(train_seg_semisup, "__file__", str(script))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize("mode, status", [("ok", 0), ("fail", 3), ("kill", 137)])
def test_launcher_status_and_one_copy_of_each_line(stand_in, capfd, mode, status):
    assert train_seg_semisup.launch_processes(2, [mode]) == status
    lines = capfd.readouterr().err.splitlines()
    killed = ["Error: process 1 was stopped by SIGKILL"] if mode == "kill" else []
    assert sorted(lines) == sorted(["threads 1 world 2", *["every process, three times"] * 3, "only process 1",
                                    *killed])


@contextlib.contextmanager
def signal_later(*pairs):
    """Send this process each (seconds from now, signal), unless the block has ended."""
    timers = [threading.Timer(delay, os.kill, (os.getpid(), signum)) for delay, signum in pairs]
    for timer in timers:
        timer.start()
    try:
        yield
    finally:
        for timer in timers:
            timer.cancel()


@pytest.mark.parametrize("sent, received", [(signal.SIGTERM, signal.SIGTERM), (signal.SIGHUP, signal.SIGTERM),
                                            (signal.SIGUSR1, signal.SIGUSR1)])
def test_launcher_passes_a_stop_signal_on_and_waits(stand_in, capfd, sent, received):
    """SIGTERM, SIGHUP or SIGUSR1 to the launcher: its processes get SIGTERM (SIGUSR1 as itself) and end as
    they do (a training process: after its iteration, checkpointed), their status the launcher's; the
    launcher's handlers go again."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGINT)}
    t0 = time.monotonic()
    with signal_later((2.0, sent)):
        assert train_seg_semisup.launch_processes(2, ["stop"]) == 128 + received
    assert time.monotonic() - t0 < 30  # the stand-ins sleep 60 s unless stopped
    lines = capfd.readouterr().err.splitlines()
    name = signal.Signals(received).name
    assert all(f"process {r} stopping on {name}" in lines for r in (0, 1))  # not killed: they stopped
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_launcher_stops_the_others_with_a_process_stopped_by_its_own_signal(stand_in, capfd):
    """A batch system signals every process; one that stops first, with 128 + SIGTERM, has the launcher pass
    the signal on to the others (their stop is not a failure: they are not killed)."""
    assert train_seg_semisup.launch_processes(2, ["one_stops"]) == 128 + signal.SIGTERM
    lines = capfd.readouterr().err.splitlines()
    assert all(f"process {r} stopping on SIGTERM" in lines for r in (0, 1))


def test_launcher_two_signals_at_once_are_both_passed_on(stand_in, capfd):
    """A batch system signals every process and a parent passes the signal on too: two signals a moment
    apart stop the processes (each notes the first), nothing is killed, no traceback."""
    t0 = time.monotonic()
    with signal_later((2.0, signal.SIGTERM), (2.02, signal.SIGUSR1)):
        status = train_seg_semisup.launch_processes(2, ["stop"])
    assert status in (128 + signal.SIGTERM, 128 + signal.SIGUSR1) and time.monotonic() - t0 < 30
    lines = capfd.readouterr().err.splitlines()
    assert sum(line.startswith("process ") and " stopping on " in line for line in lines) == 2, lines
    assert not [line for line in lines if line.startswith(("Error", "Traceback"))], lines


def test_launcher_status_is_0_when_the_processes_finish_after_a_signal(stand_in):
    """Signalled in their last iteration (or final evaluation), the processes finish the run: the launcher
    exits 0, as one process would."""
    t0 = time.monotonic()
    with signal_later((2.0, signal.SIGTERM)):
        assert train_seg_semisup.launch_processes(2, ["finish"]) == 0
    assert time.monotonic() - t0 < 30  # ended by the signal passed on, not at the end of their 60 s


def test_launcher_passes_on_a_second_signal_and_kills_on_ctrl_c(stand_in, capfd):
    """A second stop signal is passed on again, not a kill (a batch system that signals every process and a
    parent that passes it on send two); Ctrl-C kills at once."""
    t0 = time.monotonic()
    with signal_later((2.0, signal.SIGTERM), (3.0, signal.SIGTERM), (5.0, signal.SIGINT)):
        assert train_seg_semisup.launch_processes(2, ["stuck"]) == 130
    assert 5 < time.monotonic() - t0 < 30  # not at the first or second signal: at Ctrl-C
    lines = capfd.readouterr().err.splitlines()
    assert lines.count("process 0 got SIGTERM") == lines.count("process 1 got SIGTERM") == 2, lines


def test_launcher_kills_the_others_when_one_fails_while_they_stop(stand_in):
    t0 = time.monotonic()
    with signal_later((2.0, signal.SIGTERM)):
        assert train_seg_semisup.launch_processes(2, ["fail_stopping"]) == 1
    assert time.monotonic() - t0 < 30  # process 1 ignores SIGTERM: killed, not waited for
