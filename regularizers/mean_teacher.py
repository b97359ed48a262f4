"""Mean teacher (Tarvainen & Valpola, 2017) as the paper uses it.

Self-contained (torch only): copy this file into your project.

After every optimizer step the teacher's float state — parameters AND BatchNorm running statistics,
as the authors averaged every floating point entry of the state dict — moves towards the student:
φ ← α·φ + (1 − α)·θ.  Integer buffers (BatchNorm's ``num_batches_tracked``) are copied.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_tensor_pairs(teacher: nn.Module, student: nn.Module):
    """(float teacher tensors, float student tensors, other teacher tensors, other student tensors)."""
    t_state, s_state = teacher.state_dict(keep_vars=True), student.state_dict(keep_vars=True)
    if t_state.keys() != s_state.keys():
        raise ValueError("teacher and student must have the same architecture")
    t_float, s_float, t_other, s_other = [], [], [], []
    for key, t in t_state.items():
        if t.is_floating_point():
            t_float.append(t.data)
            s_float.append(s_state[key].data)
        else:
            t_other.append(t.data)
            s_other.append(s_state[key].data)
    return t_float, s_float, t_other, s_other


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, alpha: float) -> None:
    """In place: teacher ← alpha·teacher + (1 − alpha)·student for every float entry of the state."""
    t_float, s_float, t_other, s_other = ema_tensor_pairs(teacher, student)
    if t_float:
        torch._foreach_lerp_(t_float, s_float, 1.0 - alpha)
    for t, s in zip(t_other, s_other, strict=True):
        t.copy_(s)


class MeanTeacher:
    """Holds the teacher copy of ``student``; call ``update(student)`` after each optimizer step."""

    def __init__(self, student: nn.Module, alpha: float = 0.99):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"teacher alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.teacher = copy.deepcopy(student)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def update(self, student: nn.Module) -> None:
        ema_update(self.teacher, student, self.alpha)
