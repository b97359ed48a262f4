"""DeepLab v2 and DeepLab v3+ on torchvision's ResNet-101 (paper section 4; supplement D.4.1, D.4.3).

DeepLab v2 (Chen et al., TPAMI 2017), the paper's main network (Pascal VOC, Cityscapes):
- ResNet-101 at output stride 8: layer3 and layer4 keep stride 1 and use dilation 2 and 4 in every
  block. torchvision's ``replace_stride_with_dilation`` leaves the first block of each layer at the
  previous dilation, so the first 3×3 convolutions of layer3/layer4 are set to the full dilation here,
  as in DeepLab v2.
- Classifier ("ASPP-L"): the SUM of four 3×3 convolutions 2048 → C with dilations 6, 12, 18, 24;
  logits upsampled bilinearly to the input size (``align_corners=True``, as the authors' release).
- BatchNorm frozen in the whole network by default (the paper's ``--freeze_bn``), Adam lr 3e-5.

The two-branch quirk (``deeplabv2_resnet101_2branch``): the PyTorch DeepLab v2 the authors inherited
(Hung et al.'s AdvSemiSeg) returns from inside the loop over the classifier's branches, so only the
6- and 12-dilated convolutions are summed; the 18/24 branches exist (their weights are in the state
dict) but never contribute. The paper's DeepLab v2 numbers were obtained with that classifier; the
default ``deeplabv2_resnet101`` sums all four, as DeepLab v2 intends. Both load the same state dicts.

Known difference from the release's network: it loaded torchvision's ImageNet weights into a
Caffe-layout ResNet (stride 2 of layer2 in the first 1×1 convolution instead of the 3×3 one, ceil-mode
max-pool); here the torchvision layout the weights were trained in is kept. Caffe-layout state dicts
(e.g. COCO-pretrained DeepLab v2 weights) are refused by ``weights.load_weights``.

DeepLab v3+ (Chen et al., ECCV 2018; supplement Table 1, lr 1e-5): ResNet-101 at output stride 8
(torchvision's dilation pattern), ASPP with rates 12/24/36 + image pooling (torchvision's ``ASPP``,
256 channels), decoder: layer1 features projected to 48 channels, concatenated with the upsampled ASPP
output, two 3×3 conv-BN-ReLU blocks (256), 1×1 classifier. BatchNorm freezing, when asked for, covers
the backbone only; the image-pooling branch cannot train BatchNorm at batch 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from .base import SegNet
from .registry import register_arch
from .weights import resnet_backbone


def resnet_stem(backbone: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """conv1-BN-ReLU-maxpool of a torchvision ResNet: (N, 3, H, W) → (N, 64, ~H/4, ~W/4)."""
    return backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))


class SummedDilatedConvs(nn.Module):
    """DeepLab v2's classifier: sum of dilated 3×3 convolutions, (N, 2048, h, w) → (N, C, h, w).

    ``summed_branches`` < ``len(rates)`` reproduces the paper-era bug (only the first branches summed).
    """

    def __init__(self, in_channels: int, num_classes: int, rates=(6, 12, 18, 24), summed_branches: int = 4):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r) for r in rates])
        self.summed_branches = summed_branches
        for conv in self.branches:
            nn.init.normal_(conv.weight, 0.0, 0.01)  # the release's initialisation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(conv(x) for conv in self.branches[: self.summed_branches])


class DeepLabV2(SegNet):
    def __init__(self, num_classes: int, pretrained: bool = False, summed_branches: int = 4):
        super().__init__()
        self.backbone = resnet_backbone(101, pretrained, dilate=(False, True, True))
        # Every block of layer3 (layer4) at dilation 2 (4) as in DeepLab v2; torchvision's first has 1 (2).
        for layer, dilation in ((self.backbone.layer3, 2), (self.backbone.layer4, 4)):
            layer[0].conv2.dilation = (dilation, dilation)
            layer[0].conv2.padding = (dilation, dilation)
        self.backbone_pretrained = pretrained
        self.classifier = SummedDilatedConvs(2048, num_classes, summed_branches=summed_branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        b = self.backbone
        x = resnet_stem(b, x)  # (N, 64, H/4, W/4)
        x = b.layer4(b.layer3(b.layer2(b.layer1(x))))  # (N, 2048, H/8, W/8)
        x = self.classifier(x)  # (N, C, H/8, W/8)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)  # (N, C, H, W)


def conv_bn_relu(c_in: int, c_out: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class DeepLabV3Plus(SegNet):
    def __init__(self, num_classes: int, pretrained: bool = False, aspp_rates=(12, 24, 36)):
        super().__init__()
        self.backbone = resnet_backbone(101, pretrained, dilate=(False, True, True))
        self.backbone_pretrained = pretrained
        self.aspp = ASPP(2048, list(aspp_rates), out_channels=256)  # 5 branches → 1×1 conv → dropout 0.5
        self.project = conv_bn_relu(256, 48, 1)  # low-level (layer1) features
        self.fuse = nn.Sequential(conv_bn_relu(256 + 48, 256, 3), conv_bn_relu(256, 256, 3))
        self.classifier = nn.Conv2d(256, num_classes, 1)
        for m in [*self.aspp.modules(), *self.project.modules(), *self.fuse.modules(), self.classifier]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        b = self.backbone
        low = b.layer1(resnet_stem(b, x))  # (N, 256, H/4, W/4)
        x = self.aspp(b.layer4(b.layer3(b.layer2(low))))  # (N, 256, H/8, W/8)
        low = self.project(low)  # (N, 48, H/4, W/4)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        x = self.classifier(self.fuse(torch.cat([x, low], dim=1)))  # (N, C, H/4, W/4)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)  # (N, C, H, W)


def _deeplabv2(num_classes: int, pretrained: bool, freeze_bn: bool, summed_branches: int) -> DeepLabV2:
    net = DeepLabV2(num_classes, pretrained, summed_branches)
    if freeze_bn:
        net.freeze_bn()  # scope: the whole network
    return net


@register_arch("deeplabv2_resnet101", default_lr=3e-5, freeze_bn=True,
               description="DeepLab v2, ResNet-101 output stride 8, sum of 4 dilated 3x3 convs (6/12/18/24)")
def deeplabv2_resnet101(num_classes: int, pretrained: bool = False, freeze_bn: bool = True) -> SegNet:
    return _deeplabv2(num_classes, pretrained, freeze_bn, summed_branches=4)


@register_arch("deeplabv2_resnet101_2branch", default_lr=3e-5, freeze_bn=True,
               description="DeepLab v2 with the paper-era classifier bug: only the 6/12 branches summed")
def deeplabv2_resnet101_2branch(num_classes: int, pretrained: bool = False, freeze_bn: bool = True) -> SegNet:
    return _deeplabv2(num_classes, pretrained, freeze_bn, summed_branches=2)


@register_arch("deeplabv3plus_resnet101", default_lr=1e-5,
               description="DeepLab v3+, ResNet-101 output stride 8, ASPP 12/24/36 + image pooling")
def deeplabv3plus_resnet101(num_classes: int, pretrained: bool = False, freeze_bn: bool = False) -> SegNet:
    net = DeepLabV3Plus(num_classes, pretrained)
    if freeze_bn:
        net.freeze_bn([net.backbone])
    return net
