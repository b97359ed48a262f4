"""A small U-Net for CPU experiments on the synthetic data (the project's default network).

Four resolutions (channels ``width``, 2×, 4×, 8×), two 3×3 conv-BN-ReLU per stage, bilinear
upsampling + skip concatenation in the decoder. No pretrained weights: every parameter is ``new``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegNet
from .registry import register_arch
from .weights import WeightsError


def conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int):
        super().__init__(conv_bn_relu(c_in, c_out), conv_bn_relu(c_out, c_out))


class SmallUNet(SegNet):
    mean = (0.5, 0.5, 0.5)
    std = (0.25, 0.25, 0.25)

    def __init__(self, num_classes: int, width: int = 16, depth: int = 3):
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.enc = nn.ModuleList([DoubleConv(3, chans[0])] +
                                 [DoubleConv(chans[i], chans[i + 1]) for i in range(depth)])
        self.dec = nn.ModuleList([DoubleConv(chans[i + 1] + chans[i], chans[i]) for i in reversed(range(depth))])
        self.classifier = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            if i > 0:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            skips.append(x)
        skips.pop()
        for block in self.dec:
            skip = skips.pop()
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.classifier(x)  # (N, C, H, W)


@register_arch("unet_small", default_lr=1e-3, description="small 4-level U-Net, random init (CPU default)",
               has_pretrained=False)
def unet_small(num_classes: int, pretrained: bool = False, freeze_bn: bool = False, **kwargs) -> SegNet:
    if pretrained:
        raise WeightsError("not supported: unet_small has no pretrained weights; use --no-pretrained or --weights PATH")
    net = SmallUNet(num_classes, **kwargs)
    if freeze_bn:
        net.freeze_bn()
    return net
