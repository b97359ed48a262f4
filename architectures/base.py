"""The interface every segmentation network here follows.

- ``forward(x)``: ``x`` (N, 3, H, W) normalised with ``mean``/``std`` → logits (N, C, H, W) at the
  input size, for any H and W from ``min_input`` up (1 for every network here but the Dense U-net's 29).
- ``mean``/``std``: per-channel RGB statistics (0–1 scale) the network expects its input normalised by.
- ``param_groups()``: trainable parameters split into ``pretrained`` (backbone weights loaded from
  ImageNet etc.) and ``new`` (randomly initialised); the optimizer gives the pretrained group a
  smaller learning rate (the original's 0.1×).
- ``freeze_bn(modules)``: BatchNorm layers inside ``modules`` stay in eval mode (running statistics
  are used and not updated) and their affine parameters are not trained, whatever ``.train()`` says.
- ``freeze_bn_affine()``: every BatchNorm's affine parameters are not trained; its statistics still are.
"""
from __future__ import annotations

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SegNet(nn.Module):
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self):
        super().__init__()
        self._frozen_bn: list[nn.Module] = []

    backbone_pretrained: bool = False  # True once ``self.backbone`` holds pretrained (ImageNet) weights
    input_multiple: int = 1  # evaluation pads full images to multiples of this (U-Nets: their total stride)
    min_input: int = 1  # the smallest input height and width the network runs on

    def pretrained_modules(self) -> list[nn.Module]:
        """Modules whose weights come pretrained: the ``backbone`` once it was loaded, else none."""
        return [self.backbone] if self.backbone_pretrained else []

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        pretrained_ids = {id(p) for m in self.pretrained_modules() for p in m.parameters()}
        groups: dict[str, list[nn.Parameter]] = {"pretrained": [], "new": []}
        for p in self.parameters():
            if p.requires_grad:
                groups["pretrained" if id(p) in pretrained_ids else "new"].append(p)
        return groups

    def freeze_bn(self, modules: list[nn.Module] | None = None) -> None:
        """Freeze every BatchNorm inside ``modules`` (default: the whole network)."""
        for module in modules if modules is not None else [self]:
            for m in module.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
                    for p in m.parameters():
                        p.requires_grad_(False)
                    self._frozen_bn.append(m)

    def freeze_bn_affine(self) -> None:
        """Keep every BatchNorm's weight and bias fixed while its statistics still follow ``.train()`` (the
        authors' DeepLab v2 ResNet did this whatever its --freeze_bn said)."""
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                for p in m.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self._frozen_bn:
            m.eval()
        return self

    def normalise(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 RGB → float input normalised with this network's mean/std."""
        mean = torch.tensor(self.mean, device=images_uint8.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images_uint8.device).view(1, 3, 1, 1)
        return (images_uint8.float() / 255.0 - mean) / std
