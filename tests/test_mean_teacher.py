import torch
from torch import nn

from regularizers.mean_teacher import MeanTeacher, ema_update


def small_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def perturb(net):
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    net.train()
    net(torch.randn(4, 3, 8, 8))  # moves BatchNorm running statistics and num_batches_tracked


def test_alpha_zero_copies_student():
    student = small_net()
    mt = MeanTeacher(student, alpha=0.0)
    perturb(student)
    mt.update(student)
    for key, value in student.state_dict().items():
        torch.testing.assert_close(mt.teacher.state_dict()[key], value)


def test_alpha_one_keeps_teacher_floats():
    student = small_net()
    mt = MeanTeacher(student, alpha=1.0)
    before = {k: v.clone() for k, v in mt.teacher.state_dict().items()}
    perturb(student)
    mt.update(student)
    for key, value in mt.teacher.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, before[key])
        else:  # integer buffers are copied
            assert torch.equal(value, student.state_dict()[key])


def test_ema_formula_includes_bn_buffers():
    student = small_net()
    mt = MeanTeacher(student, alpha=0.9)
    teacher_before = {k: v.clone() for k, v in mt.teacher.state_dict().items()}
    perturb(student)
    mt.update(student)
    for key in ("0.weight", "1.running_mean", "1.running_var"):
        expected = 0.9 * teacher_before[key] + 0.1 * student.state_dict()[key]
        torch.testing.assert_close(mt.teacher.state_dict()[key], expected)
    assert not torch.allclose(mt.teacher.state_dict()["1.running_mean"], teacher_before["1.running_mean"])


def test_teacher_is_not_trained_and_functional_update_matches():
    """At α = 0.9, where swapping α and 1 − α shows: the class and the function both give
    α·teacher + (1 − α)·student."""
    student = small_net()
    mt = MeanTeacher(student, alpha=0.9)
    assert all(not p.requires_grad for p in mt.teacher.parameters())
    other = MeanTeacher(student, alpha=0.9).teacher
    before = {k: v.clone() for k, v in mt.teacher.state_dict().items()}
    perturb(student)
    mt.update(student)
    ema_update(other, student, 0.9)
    for key, value in mt.teacher.state_dict().items():
        if value.is_floating_point():
            expected = 0.9 * before[key] + 0.1 * student.state_dict()[key]
        else:  # num_batches_tracked: copied
            expected = student.state_dict()[key]
        torch.testing.assert_close(value, expected)
        torch.testing.assert_close(other.state_dict()[key], expected)
