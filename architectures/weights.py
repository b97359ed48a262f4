"""Pretrained weights: ImageNet backbones through torchvision's weights enums, and state dicts that
users bring themselves (``--weights PATH``).

- ImageNet weights come from ``WeightsEnum.get_state_dict`` and are cached where torchvision caches
  them: ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``, by default
  ``~/.cache/torch/hub/checkpoints``). The V1 weights are the ones the paper's release used.
- When weights are asked for and cannot be had (no network, no cached file), building the network
  raises ``WeightsUnavailableError`` -- before any training -- with ONE line that names the file wanted
  and the two fixes: ``--weights PATH`` or ``--no-pretrained``.
- ``load_weights(net, path)`` accepts a state dict of the whole network (e.g. a saved ``model.pt``) or of
  its ImageNet backbone (a torchvision classification checkpoint copied to an offline machine).
- Caffe-style ResNets (stride 2 in the first 1×1 convolution of a downsampling block instead of in the
  3×3 one; the COCO-pretrained DeepLab v2 weights of Hung et al. and the paper's release come from such
  a network) have the same parameter shapes as torchvision's ResNet but are a different network, so
  their state dicts are detected by their key names and refused (``WeightsError``).

The networks in this package expose ``backbone`` (the module an ImageNet checkpoint describes) and
``backbone_pretrained`` (whether it was loaded from pretrained weights, which decides the parameter
groups); ``load_weights`` relies on those two attributes.
"""
from __future__ import annotations

import os
import pickle
import re
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision import models

FIXES = "pass --weights PATH (a state dict) or --no-pretrained"


class WeightsError(Exception):
    """A weights file that cannot be used for the network; the message is one line with the fixes."""


class WeightsUnavailableError(WeightsError):
    """Pretrained weights were asked for but cannot be had (not cached and no download possible)."""


def _one_line(text: object, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Everything that can go wrong while fetching or reading a checkpoint: no network or blocked proxy
# (URLError and socket errors are OSErrors), a hash mismatch (RuntimeError), a truncated file.
# what torch.load raises on a file that is not a checkpoint: its unpickler reads arbitrary bytes as opcodes,
# so a text file can also end in a KeyError or IndexError of the unpickler's memo/stack
_READ_ERRORS = (OSError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, IndexError, ValueError)


# ---------------------------------------------------------------------------------------------------
# ImageNet backbones (torchvision weights enums)
# ---------------------------------------------------------------------------------------------------
def imagenet_state_dict(weights: models.WeightsEnum) -> dict[str, torch.Tensor]:
    """Fetch ``weights`` (download once, then read from the torch hub cache) or raise a one-line error."""
    filename = os.path.basename(urlparse(weights.url).path)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except _READ_ERRORS as e:
        cause = f"{type(e).__name__}: {_one_line(e)}"
        if os.path.exists(cached):  # a damaged file: delete it and it is downloaded again
            raise WeightsUnavailableError(f"cached ImageNet weights {cached} cannot be read ({cause}); "
                                          f"delete the file, or {FIXES}") from None
        raise WeightsUnavailableError(
            f"ImageNet weights {filename} are not cached at {cached} and could not be downloaded from "
            f"{weights.url} ({cause}); {FIXES}") from None


def resnet_backbone(depth: int, pretrained: bool,
                    dilate: tuple[bool, bool, bool] = (False, False, False)) -> models.ResNet:
    """torchvision ResNet-``depth`` (50 or 101) without its classifier (``fc`` is an identity).

    ``dilate``: replace the stride of layer2/3/4 with dilation (torchvision's
    ``replace_stride_with_dilation``); ``(False, True, True)`` gives output stride 8.
    """
    builder, weights = {50: (models.resnet50, models.ResNet50_Weights.IMAGENET1K_V1),
                        101: (models.resnet101, models.ResNet101_Weights.IMAGENET1K_V1)}[depth]
    state_dict = imagenet_state_dict(weights) if pretrained else None  # fetch first: fail before building
    net = builder(weights=None, replace_stride_with_dilation=list(dilate))
    if state_dict is not None:
        net.load_state_dict(state_dict)
    net.fc = nn.Identity()
    return net


def densenet161_backbone(pretrained: bool) -> nn.Sequential:
    """torchvision DenseNet-161's ``features`` (conv0 ... denseblock4, norm5; no final ReLU/classifier)."""
    state_dict = imagenet_state_dict(models.DenseNet161_Weights.IMAGENET1K_V1) if pretrained else None
    net = models.densenet161(weights=None)
    if state_dict is not None:
        net.load_state_dict(rename_legacy_densenet_keys(state_dict))
    return net.features


def rename_legacy_densenet_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's DenseNet checkpoints still name dense-layer modules ``norm.1``, ``conv.2``, ...;
    the modules are now ``norm1``, ``conv2``."""
    legacy = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")
    return {legacy.sub(r"\1\2.", k): v for k, v in state_dict.items()}


# ---------------------------------------------------------------------------------------------------
# --weights PATH
# ---------------------------------------------------------------------------------------------------
# Key names that only ResNets ported from Caffe use: the DeepLab-ResNet PyTorch port behind Hung et al.'s
# COCO weights (``Scale.`` wrapper) and the paper's release (``layer5.conv2d_list`` classifier),
# kazuto1011/deeplab-pytorch (``reduce``/``increase`` units), and raw Caffe layer names.
CAFFE_KEY_PATTERNS = (
    re.compile(r"^Scale\."),
    re.compile(r"(^|\.)layer5\.conv2d_list\."),
    re.compile(r"\.reduce\.conv\.weight$"),
    re.compile(r"(^|\.)(res\d+[a-z]\w*_branch\d|bn_conv1)"),
)


def caffe_resnet_key(state_dict: dict[str, torch.Tensor]) -> str | None:
    """The first key that marks ``state_dict`` as a Caffe-style ResNet, or None."""
    for key in state_dict:
        if any(p.search(key) for p in CAFFE_KEY_PATTERNS):
            return key
    return None


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (tensors only). Unwraps checkpoints that hold one under ``state_dict``,
    ``model`` or ``teacher`` (this project's ``checkpoint.pt``: the teacher is the evaluated network) and
    DataParallel's ``module.`` prefix."""
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"weights file {path} does not exist; {FIXES}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except _READ_ERRORS as e:
        raise WeightsError(f"cannot read {path} as a state dict ({type(e).__name__}: {_one_line(e)}); "
                           f"{FIXES}") from None
    for key in ("state_dict", "model", "teacher"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(torch.is_tensor(v) for v in obj.values()):
        raise WeightsError(f"{path} does not hold a state dict (a dict of tensors); {FIXES}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_strict(module: nn.Module, state_dict: dict[str, torch.Tensor], path: str, what: str) -> None:
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as e:  # size mismatches
        raise WeightsError(f"{path} does not fit {what} ({_one_line(e)}); {FIXES}") from None


def _as_backbone_state_dict(state_dict: dict[str, torch.Tensor], backbone: nn.Module):
    """``state_dict`` as a state dict of ``backbone`` if it is an ImageNet checkpoint of it, else None.

    Accepted: the keys of ``backbone`` (num_batches_tracked optional), directly or under ``features.``
    (DenseNet), plus the classifier that the segmentation network drops (``fc.*``, ``classifier.*``).
    """
    state_dict = rename_legacy_densenet_keys(state_dict)
    backbone_keys = set(backbone.state_dict())
    wanted = {k for k in backbone_keys if not k.endswith("num_batches_tracked")}
    for prefix in ("", "features."):
        inner = {k.removeprefix(prefix): v for k, v in state_dict.items()
                 if k.startswith(prefix) and k.removeprefix(prefix) in backbone_keys}
        rest = [k for k in state_dict
                if not (k.startswith(prefix) and k.removeprefix(prefix) in backbone_keys)]
        if wanted <= set(inner) and all(k.startswith(("fc.", "classifier.")) for k in rest):
            return inner
    return None


def load_weights(net: nn.Module, path: str) -> str:
    """Load ``path`` into ``net``: the whole network, or (an ImageNet checkpoint) its backbone.

    Returns ``"network"`` or ``"backbone"``; raises ``WeightsError`` (one line) for anything else.
    Either way the backbone counts as pretrained afterwards (its parameters join the ``pretrained`` group).
    """
    state_dict = read_state_dict(path)
    name = type(net).__name__
    caffe_key = caffe_resnet_key(state_dict)
    if caffe_key is not None:
        raise WeightsError(
            f"{path} is a Caffe-style ResNet state dict (key {caffe_key!r}; stride in the 1x1 convolution, "
            f"e.g. Hung et al.'s COCO DeepLab v2): it is not the same network as {name}'s torchvision "
            f"ResNet; pass --weights PATH with a torchvision-layout state dict or --no-pretrained")
    net_keys = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
    if net_keys <= set(state_dict) <= set(net.state_dict()):
        _load_strict(net, state_dict, path, name)
        loaded = "network"
    else:
        backbone = getattr(net, "backbone", None)
        backbone_sd = _as_backbone_state_dict(state_dict, backbone) if backbone is not None else None
        if backbone_sd is None:
            missing = sorted(net_keys - set(state_dict))
            unexpected = sorted(set(state_dict) - set(net.state_dict()))
            raise WeightsError(
                f"{path} is neither a state dict of {name} nor of its ImageNet backbone ({len(missing)} keys "
                f"missing, e.g. {missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]}); {FIXES}")
        _load_strict(backbone, backbone_sd, path, f"the backbone of {name}")
        loaded = "backbone"
    if hasattr(net, "backbone"):
        net.backbone_pretrained = True
    return loaded
