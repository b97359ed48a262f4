"""PSPNet on a dilated ResNet-101 (Zhao et al., CVPR 2017; supplement D.4.3 and Table 1, lr 1e-4).

The paper used the MIT CSAIL implementation (``resnet101dilated`` encoder + ``ppm`` decoder) WITHOUT the
auxiliary loss (the "deep supervision trick"), so there is no auxiliary head here. Structure:
- torchvision ResNet-101 at output stride 8 (layer3/layer4 dilation 2/4, first block of each at the
  previous dilation: the same pattern as CSAIL's ``_nostride_dilate``). CSAIL's ResNet has a deep stem
  (three 3×3 convolutions) with their own ImageNet weights; torchvision's 7×7 stem is used here.
- Pyramid pooling module: for each bin b in (1, 2, 3, 6), adaptive average pooling to b×b, 1×1 conv
  2048 → 512, BN, ReLU, bilinear upsampling back; concatenated with the features (2048 + 4·512 = 4096).
- 3×3 conv 4096 → 512, BN, ReLU, Dropout2d(0.1), 1×1 conv → C; bilinear upsampling to the input size.
The bin-1 branch cannot train BatchNorm at batch 1 (test at batch ≥ 2 or freeze BN). BatchNorm
freezing, when asked for, covers the backbone only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegNet
from .registry import register_arch
from .weights import resnet_backbone


class PyramidPooling(nn.Module):
    """(N, C_in, h, w) → (N, C_in + len(bins)·C_branch, h, w)."""

    def __init__(self, in_channels: int, bins=(1, 2, 3, 6), branch_channels: int = 512):
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Sequential(nn.AdaptiveAvgPool2d(b), nn.Conv2d(in_channels, branch_channels, 1, bias=False),
                          nn.BatchNorm2d(branch_channels), nn.ReLU(inplace=True))
            for b in bins])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False)
                  for branch in self.branches]  # each (N, 512, h, w)
        return torch.cat([x, *pooled], dim=1)


class PSPNet(SegNet):
    def __init__(self, num_classes: int, pretrained: bool = False):
        super().__init__()
        self.backbone = resnet_backbone(101, pretrained, dilate=(False, True, True))
        self.backbone_pretrained = pretrained
        self.ppm = PyramidPooling(2048)
        self.head = nn.Sequential(
            nn.Conv2d(2048 + 4 * 512, 512, 3, padding=1, bias=False), nn.BatchNorm2d(512),
            nn.ReLU(inplace=True), nn.Dropout2d(0.1), nn.Conv2d(512, num_classes, 1))
        for m in [*self.ppm.modules(), *self.head.modules()]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        b = self.backbone
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))  # (N, 64, H/4, W/4)
        x = b.layer4(b.layer3(b.layer2(b.layer1(x))))  # (N, 2048, H/8, W/8)
        x = self.head(self.ppm(x))  # (N, C, H/8, W/8)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # (N, C, H, W)


@register_arch("pspnet_resnet101", default_lr=1e-4,
               description="PSPNet, dilated ResNet-101 + pyramid pooling (bins 1/2/3/6), no auxiliary loss")
def pspnet_resnet101(num_classes: int, pretrained: bool = False, freeze_bn: bool = False) -> SegNet:
    net = PSPNet(num_classes, pretrained)
    if freeze_bn:
        net.freeze_bn([net.backbone])
    return net
