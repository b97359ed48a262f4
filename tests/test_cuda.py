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
