"""The same code on a CUDA device (skipped where there is none; run on a GPU machine before a release).

Each test compares the GPU against the CPU path or runs a whole command with ``--device cuda``.
"""
import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import regularizers
import toy2d
import train_seg_semisup
from architectures import build_arch
from evaluation import ConfusionMatrix
from regularizers.losses import ConsistencyLoss
from regularizers.mean_teacher import MeanTeacher

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY = ["--synthetic-n-train", "24", "--synthetic-n-val", "6", "--n-sup", "6", "--batch-size", "2",
        "--iters", "3", "--eval-every", "2", "--eval-batch-size", "6", "--device", "cuda"]


@pytest.mark.parametrize("reg", sorted(regularizers.REGULARIZERS) + ["none"])
def test_every_regularizer_trains_on_cuda(tmp_path, reg):
    out = tmp_path / "run"
    result = CliRunner().invoke(train_seg_semisup.main, [*TINY, "--reg", reg, "--out-dir", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["device"] == "cuda"
    final = json.loads((out / "final.json").read_text())
    assert final["iters"] == 3 and 0.0 <= final["miou"] <= 1.0 and final["peak_gpu_mb"] > 0
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt["student"].values() if v.is_floating_point())


def test_resume_on_cuda_continues_from_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    args = [*TINY, "--reg", "cutmix", "--iters", "2", "--out-dir", str(out)]
    assert CliRunner().invoke(train_seg_semisup.main, args, catch_exceptions=False).exit_code == 0
    result = CliRunner().invoke(train_seg_semisup.main, ["--resume", "--out-dir", str(out), "--iters", "4"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "final.json").read_text())["iters"] == 4


def test_deeplab_trains_a_step_on_cuda(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(train_seg_semisup.main, [
        *TINY, "--reg", "cutmix", "--arch", "deeplabv2_resnet101", "--no-pretrained", "--crop-size", "65",
        "--iters", "2", "--out-dir", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    net = build_arch("deeplabv3plus_resnet101", num_classes=5, pretrained=False).cuda().eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 97, 113, device="cuda")).shape == (2, 5, 97, 113)


def test_confusion_matrix_cuda_equals_cpu():
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, 6, (4, 33, 47), generator=g)
    label[:, :5] = 255
    pred = torch.randint(0, 6, (4, 33, 47), generator=g)
    cpu, gpu = ConfusionMatrix(6), ConfusionMatrix(6, device="cuda")
    cpu.update(pred, label)
    gpu.update(pred.cuda(), label.cuda())
    assert torch.equal(cpu.matrix, gpu.matrix.cpu()) and cpu.miou() == pytest.approx(gpu.miou())


def test_mean_teacher_cuda_equals_cpu():
    torch.manual_seed(0)
    start = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    student = copy.deepcopy(start)
    student(torch.randn(2, 3, 8, 8))  # moves the BN running statistics
    with torch.no_grad():
        student[0].weight.add_(1.0)
    teachers = {}
    for device in ("cpu", "cuda"):
        mt = MeanTeacher(copy.deepcopy(start).to(device), alpha=0.9)
        mt.update(student.to(device))
        teachers[device] = {k: v.cpu() for k, v in mt.teacher.state_dict().items()}
    assert not torch.equal(teachers["cpu"]["0.weight"], start[0].weight)
    for key, value in teachers["cpu"].items():
        assert torch.allclose(value.float(), teachers["cuda"][key].float(), atol=1e-6), key


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 3, 1))

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("name", ["cutmix", "cowmix", "ict", "classmix", "aug"])
def test_regularizer_loss_cuda_matches_cpu(name):
    """The same masks (drawn from the same numpy RNG) give the same loss on either device."""
    torch.manual_seed(0)
    student, teacher = TinyNet(), TinyNet()
    g = torch.Generator().manual_seed(1)
    n, h, w = 3, 24, 32
    batch = {"image": torch.randn(n, 3, h, w, generator=g), "valid": torch.ones(n, 1, h, w),
             "image_s": torch.randn(n, 3, h, w, generator=g), "valid_s": torch.ones(n, 1, h, w),
             "theta": torch.tensor([[1.0, 0.0, 0.1], [0.0, -1.0, 0.0]]).expand(n, 2, 3)}
    partner = {"image": torch.randn(n, 3, h, w, generator=g), "valid": torch.ones(n, 1, h, w)}
    losses = {}
    for device in ("cpu", "cuda"):
        cls = regularizers.get_regularizer_class(name)
        reg = regularizers.build_regularizer(name, ConsistencyLoss("var", conf_thresh=0.0),
                                             np.random.default_rng(0), dict(cls.defaults))
        s, t = TinyNet().to(device), TinyNet().to(device)
        s.load_state_dict(student.state_dict())
        t.load_state_dict(teacher.state_dict())
        on = {k: v.to(device) for k, v in batch.items()}
        part = {k: v.to(device) for k, v in partner.items()} if reg.needs_partner else None
        loss, _ = reg(s, t, on, part)
        losses[device] = float(loss)
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-3, abs=1e-6)


def test_toy2d_trains_on_cuda(tmp_path):
    out = tmp_path / "toy"
    result = CliRunner().invoke(toy2d.cli, ["train", "--dataset", "spiral", "--epochs", "1", "--hidden-size", "32",
                                            "--device", "cuda", "--out-dir", str(out)])
    assert result.exit_code == 0, result.output
    final = json.loads((out / "final.json").read_text())
    assert 0.0 <= final["error_rate"] <= 1.0 and (out / "prediction.png").is_file()


def run_script(args, timeout=600):
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, str(root / "train_seg_semisup.py"), *args], cwd=root, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_more_processes_than_gpus_is_one_line(tmp_path):
    n = torch.cuda.device_count() + 1
    proc = run_script([*TINY, "--batch-size", str(2 * n), "--processes", str(n), "--out-dir", str(tmp_path / "run")])
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert (f"Error: more processes on this machine than its {n - 1} CUDA device(s); lower --processes "
            f"(torchrun: --nproc_per_node)\n") in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_train_what_one_gpu_trains_and_resume(tmp_path):
    """NCCL: supervised with frozen BatchNorm, 2 GPUs × 2 images ≈ 1 GPU × 4 images (GPU kernels round
    differently per batch size); CutMix on 2 GPUs resumes to the uninterrupted run's weights (to GPU rounding)."""
    args = [*TINY, "--batch-size", "4", "--reg", "none", "--freeze-bn", "--iters", "6", "--save-model"]
    for n in (1, 2):
        proc = run_script([*args, "--processes", str(n), "--out-dir", str(tmp_path / f"p{n}")])
        assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (torch.load(tmp_path / f"p{n}" / "model.pt", map_location="cpu") for n in (1, 2))
    assert max((one[k].double() - two[k].double()).abs().max().item() for k in one
               if one[k].is_floating_point()) < 1e-4
    cutmix = [*TINY, "--batch-size", "4", "--reg", "cutmix", "--processes", "2"]
    straight, parted = tmp_path / "straight", tmp_path / "parted"
    assert run_script([*cutmix, "--iters", "4", "--out-dir", str(straight)]).returncode == 0
    assert run_script([*cutmix, "--iters", "2", "--out-dir", str(parted)]).returncode == 0
    proc = run_script(["--resume", "--out-dir", str(parted), "--iters", "4"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = (torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=False) for d in (straight, parted))
    assert all(torch.allclose(a["teacher"][k].double(), b["teacher"][k].double(), atol=1e-4) for k in a["teacher"])
