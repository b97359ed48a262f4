"""U-Nets on ImageNet classifiers, built as in the authors' release (``denseunet.py``, ``resunet.py``).

DenseNet-161 "Dense U-net" (the paper's ISIC 2017 network, after Li et al.'s H-DenseUNet; supplement
D.4.2, and Table 1/2 on Pascal with lr 3e-4):
- Encoder: torchvision DenseNet-161 ``features``. Skips are tapped where the authors tapped them: the
  stem output before ``pool0`` (96 channels, H/2) and the input of each transition, i.e. the dense-block
  outputs (384 at H/4, 768 at H/8, 2112 at H/16; a 1×1 conv maps the last to 2208). The bottom is
  ReLU(norm5) (2208 channels, H/32).
- Decoder, one block per resolution: ×2 nearest upsampling, ADD the skip (channels match), 3×3 conv
  (no bias), BN, ReLU: 2208 → 768 → 384 → 96 → 96.
- Final: ×2 upsampling to the input size, 3×3 conv 96 → 64, Dropout(0.3), BN, ReLU, 1×1 conv → C.

ResNet-50/101 U-Nets (in the release, not in the paper's tables): the same decoder on a torchvision
ResNet; skips are the stem's BN output (64, H/2; tapped before the stem's in-place ReLU, which then
rectifies it too, in the release as here), layer1
(256, H/4), layer2 (512, H/8), layer3 (1024, H/16); layer4 (2048, H/32) goes through a 1×1 conv to 1024.
Decoder 1024 → 512 → 256 → 64 → 64, then the same final layers.

Upsampling goes to the skip's size (not blindly ×2), so odd input sizes run; evaluation pads full images
to multiples of 32 (``input_multiple``), as the authors' did, so that every skip lines up with the ×2
upsampling the network was trained with. BatchNorm freezing, when asked for, covers the encoder only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import SegNet
from .registry import register_arch
from .weights import densenet161_backbone, resnet_backbone


class UpAddBlock(nn.Module):
    """Upsample x to the skip's size (nearest), add the skip, 3×3 conv-BN-ReLU.

    x: (N, c_in, h, w), skip: (N, c_in, ~2h, ~2w) → (N, c_out, ~2h, ~2w)
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="nearest") + skip
        return F.relu(self.bn(self.conv(x)))


class FinalLayers(nn.Module):
    """Upsample to the input size, 3×3 conv → 64, dropout 0.3, BN, ReLU, 1×1 classifier (release order)."""

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, 64, 3, padding=1, bias=False)
        self.drop = nn.Dropout(0.3)
        self.bn = nn.BatchNorm2d(64)
        self.classifier = nn.Conv2d(64, num_classes, 1)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        x = F.interpolate(x, size=size, mode="nearest")
        return self.classifier(F.relu(self.bn(self.drop(self.conv(x)))))  # (N, C, H, W)


class DenseUNet(SegNet):
    input_multiple = 32  # five ×2 downsamplings: evaluation pads to multiples of 32, as the authors did
    min_input = 29  # below 29 px transition3's 2×2 average pooling gets a 1×1 map and fails
    # features children before which a skip is tapped: the stem (relu0 output), dense blocks 1-3
    TAPS = ("pool0", "transition1", "transition2", "transition3")

    def __init__(self, num_classes: int, pretrained: bool = False):
        super().__init__()
        self.backbone = densenet161_backbone(pretrained)
        self.backbone_pretrained = pretrained
        skip_channels = [self.backbone.norm0.num_features] + [
            getattr(self.backbone, t).norm.num_features for t in self.TAPS[1:]]  # [96, 384, 768, 2112]
        bottom = self.backbone.norm5.num_features  # 2208
        self.bridge = nn.Conv2d(skip_channels[-1], bottom, 1)  # H/16 skip: 2112 → 2208
        chans = [bottom, *reversed(skip_channels[:-1]), skip_channels[0]]  # [2208, 768, 384, 96, 96]
        self.decoder = nn.ModuleList([UpAddBlock(chans[i], chans[i + 1]) for i in range(4)])
        self.final = FinalLayers(chans[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        skips = []
        for name, module in self.backbone.named_children():
            if name in self.TAPS:
                skips.append(x)  # (N, 96, H/2), (N, 384, H/4), (N, 768, H/8), (N, 2112, H/16)
            x = module(x)
        x = F.relu(x)  # (N, 2208, H/32)
        skips[-1] = self.bridge(skips[-1])
        for block, skip in zip(self.decoder, reversed(skips), strict=True):
            x = block(x, skip)  # up to H/16, H/8, H/4, H/2
        return self.final(x, size)


class ResUNet(SegNet):
    input_multiple = 32  # five ×2 downsamplings: evaluation pads to multiples of 32, as the authors did

    def __init__(self, num_classes: int, depth: int = 50, pretrained: bool = False):
        super().__init__()
        self.backbone = resnet_backbone(depth, pretrained)
        self.backbone_pretrained = pretrained
        self.bridge = nn.Conv2d(2048, 1024, 1)
        chans = [1024, 512, 256, 64, 64]
        self.decoder = nn.ModuleList([UpAddBlock(chans[i], chans[i + 1]) for i in range(4)])
        self.final = FinalLayers(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        b = self.backbone
        r2 = b.bn1(b.conv1(x))  # (N, 64, H/2, W/2); the in-place ReLU below changes it too, so the skip
        # carries the post-ReLU values, as in the release
        r4 = b.layer1(b.maxpool(b.relu(r2)))  # (N, 256, H/4, W/4)
        r8 = b.layer2(r4)  # (N, 512, H/8, W/8)
        r16 = b.layer3(r8)  # (N, 1024, H/16, W/16)
        x = self.bridge(b.layer4(r16))  # (N, 1024, H/32, W/32)
        for block, skip in zip(self.decoder, (r16, r8, r4, r2), strict=True):
            x = block(x, skip)
        return self.final(x, size)


def _freeze_encoder_bn(net: SegNet, freeze_bn: bool) -> SegNet:
    if freeze_bn:
        net.freeze_bn([net.backbone])
    return net


@register_arch("densenet161_unet", default_lr=3e-4,
               description="Dense U-net: DenseNet-161 encoder, add-skip decoder (the paper's ISIC network)")
def densenet161_unet(num_classes: int, pretrained: bool = False, freeze_bn: bool = False) -> SegNet:
    return _freeze_encoder_bn(DenseUNet(num_classes, pretrained), freeze_bn)


@register_arch("resnet50_unet", default_lr=3e-4,
               description="U-Net on ResNet-50, Dense U-net decoder (release only; lr not in Table 2)")
def resnet50_unet(num_classes: int, pretrained: bool = False, freeze_bn: bool = False) -> SegNet:
    return _freeze_encoder_bn(ResUNet(num_classes, 50, pretrained), freeze_bn)


@register_arch("resnet101_unet", default_lr=3e-4,
               description="U-Net on ResNet-101, Dense U-net decoder (release only; lr not in Table 2)")
def resnet101_unet(num_classes: int, pretrained: bool = False, freeze_bn: bool = False) -> SegNet:
    return _freeze_encoder_bn(ResUNet(num_classes, 101, pretrained), freeze_bn)
