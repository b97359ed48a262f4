"""Every registered network: shapes, parameter groups, frozen BatchNorm, weights loading (CPU, random init).

Each network is built once per module (ResNet-101s are big); downloads are blocked and the torch hub
cache points to an empty temporary folder in every test, so nothing here touches the network.
"""
from __future__ import annotations

import copy
import urllib.error

import pytest
import torch
import torchvision
from torch import nn

from architectures import ARCHITECTURES, build_arch, get_arch_spec
from architectures.weights import WeightsError, WeightsUnavailableError, caffe_resnet_key, load_weights

torch.set_num_threads(2)
NAMES = sorted(ARCHITECTURES)
NUM_CLASSES = 5


def _blocked_download(url, *args, **kwargs):
    raise urllib.error.URLError(f"downloads are blocked in tests ({url})")


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty weights cache and no downloads (torchvision fetches through torch.hub)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _blocked_download)


@pytest.fixture(scope="module")
def nets():
    cache: dict[str, nn.Module] = {}

    def get(name: str) -> nn.Module:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = build_arch(name, NUM_CLASSES)
        return cache[name]

    return get


def _bn_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def _eval_logits(net: nn.Module, seed: int = 1) -> torch.Tensor:
    x = torch.randn(1, 3, 33, 33, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return net.eval()(x)


def test_registry_defaults_follow_supplement_table2():
    expected = {"deeplabv2_resnet101": (3e-5, True), "deeplabv2_resnet101_2branch": (3e-5, True),
                "deeplabv3plus_resnet101": (1e-5, False), "densenet161_unet": (3e-4, False),
                "pspnet_resnet101": (1e-4, False)}
    for name, (lr, freeze) in expected.items():
        spec = get_arch_spec(name)
        assert (spec.default_lr, spec.freeze_bn) == (lr, freeze), name


@pytest.mark.parametrize("name", NAMES)
def test_logits_at_input_size(nets, name):
    net = nets(name)
    assert len(net.mean) == 3 and len(net.std) == 3
    x = torch.randn(2, 3, 65, 97)  # odd sizes; batch 2 so global-pooling heads can train BatchNorm
    with torch.no_grad():
        y = net.train()(x)
    assert y.shape == (2, NUM_CLASSES, 65, 97)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_param_groups_partition_trainable_params(nets, name, monkeypatch):
    net = nets(name)
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    backbone = getattr(net, "backbone", None)
    for pretrained in (False, True):
        if backbone is not None:
            monkeypatch.setattr(net, "backbone_pretrained", pretrained)
        groups = net.param_groups()
        ids = [[id(p) for p in groups[g]] for g in ("pretrained", "new")]
        assert not set(ids[0]) & set(ids[1])
        assert set(ids[0]) | set(ids[1]) == trainable
        assert len(ids[0]) + len(ids[1]) == len(trainable)  # no parameter listed twice
        expected = set()
        if pretrained and backbone is not None:
            expected = {id(p) for p in backbone.parameters() if p.requires_grad}
        assert set(ids[0]) == expected


@pytest.mark.parametrize("name", NAMES)
def test_frozen_bn_stays_in_eval_mode(name):
    net = build_arch(name, NUM_CLASSES, freeze_bn=True)
    net.train()
    # Scope: the whole network for DeepLab v2 (and networks without a backbone), else the backbone.
    scope = net if get_arch_spec(name).freeze_bn or not hasattr(net, "backbone") else net.backbone
    frozen = _bn_layers(scope)
    assert frozen
    for m in frozen:
        assert not m.training
        assert not any(p.requires_grad for p in m.parameters())
    frozen_ids = {id(m) for m in frozen}
    assert all(m.training for m in _bn_layers(net) if id(m) not in frozen_ids)  # heads keep training BN


@pytest.mark.parametrize("name", ["deeplabv2_resnet101", "deeplabv3plus_resnet101", "pspnet_resnet101"])
def test_dilated_resnets_run_at_output_stride_8(nets, name):
    """Every block of layer3 / layer4 at dilation 2 / 4 (DeepLab v2 sets the first blocks too; torchvision's
    dilation pattern leaves them at 1 / 2 in DeepLab v3+ and PSPNet), and layer4 at 1/8 of the input."""
    backbone = nets(name).backbone
    dilations = {layer: [block.conv2.dilation for block in getattr(backbone, layer)] for layer in ("layer3", "layer4")}
    if name.startswith("deeplabv2"):
        assert set(dilations["layer3"]) == {(2, 2)} and set(dilations["layer4"]) == {(4, 4)}
        assert all(block.conv2.padding == block.conv2.dilation for layer in ("layer3", "layer4")
                   for block in getattr(backbone, layer))
    else:
        assert dilations["layer3"][0] == (1, 1) and set(dilations["layer3"][1:]) == {(2, 2)}
        assert dilations["layer4"][0] == (2, 2) and set(dilations["layer4"][1:]) == {(4, 4)}
    x = torch.randn(1, 3, 65, 97)
    with torch.no_grad():
        features = backbone.layer4(backbone.layer3(backbone.layer2(backbone.layer1(
            backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(x))))))))
    assert features.shape[-2:] == (9, 13)  # ceil(65 / 8), ceil(97 / 8)


def test_classifier_and_aspp_rates(nets):
    branches = nets("deeplabv2_resnet101").classifier.branches
    assert [conv.dilation for conv in branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    assert [conv.padding for conv in branches] == [(6, 6), (12, 12), (18, 18), (24, 24)]
    aspp = nets("deeplabv3plus_resnet101").aspp
    assert [aspp.convs[i][0].dilation for i in (1, 2, 3)] == [(12, 12), (24, 24), (36, 36)]


@pytest.mark.parametrize("name", ["densenet161_unet", "resnet50_unet", "resnet101_unet"])
def test_unets_ask_evaluation_to_pad_to_32(nets, name):
    assert nets(name).input_multiple == 32
    assert nets("deeplabv2_resnet101").input_multiple == 1


def test_default_bn_setting_is_the_papers(nets):
    """Built without --freeze-bn/--no-freeze-bn, DeepLab v2's BatchNorm is frozen (whole network), the others train."""
    frozen = [m for m in nets("deeplabv2_resnet101").modules() if isinstance(m, nn.BatchNorm2d)]
    assert frozen and all(not m.weight.requires_grad and not m.bias.requires_grad for m in frozen)
    trained = [m for m in nets("deeplabv3plus_resnet101").modules() if isinstance(m, nn.BatchNorm2d)]
    assert trained and all(m.weight.requires_grad for m in trained)


def test_two_branch_quirk_differs_from_four_branch_sum(nets):
    four, two = nets("deeplabv2_resnet101"), nets("deeplabv2_resnet101_2branch")
    two.load_state_dict(four.state_dict())  # the same weights fit both
    assert not torch.allclose(_eval_logits(four), _eval_logits(two))
    # Two-branch = four-branch with the 18- and 24-dilated branches removed.
    truncated = copy.deepcopy(four)
    for conv in truncated.classifier.branches[2:]:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    torch.testing.assert_close(_eval_logits(truncated), _eval_logits(two))


@pytest.mark.parametrize("name", NAMES)
def test_weights_round_trip_restores_outputs(nets, name, tmp_path):
    net = nets(name)
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    torch.manual_seed(123)  # a different random initialisation
    # pretrained=True with downloads blocked: --weights replaces the download (offline machines)
    restored = build_arch(name, NUM_CLASSES, pretrained=True, weights=str(path))
    assert torch.equal(_eval_logits(restored), _eval_logits(net))


@pytest.mark.parametrize("name", NAMES)
def test_offline_error_is_one_line(name):
    if not get_arch_spec(name).has_pretrained:
        with pytest.raises(WeightsError, match="has no pretrained weights"):
            build_arch(name, NUM_CLASSES, pretrained=True)
        return
    try:
        build_arch(name, NUM_CLASSES, pretrained=True)
    except WeightsUnavailableError as e:
        message = str(e)
        assert "\n" not in message
        assert ".pth" in message and "--weights PATH" in message and "--no-pretrained" in message
    else:
        pytest.fail("built with pretrained weights although downloads are blocked and the cache is empty")


@pytest.mark.parametrize("name, classifier", [("resnet50_unet", torchvision.models.resnet50),
                                              ("densenet161_unet", torchvision.models.densenet161)])
def test_imagenet_checkpoint_loads_into_backbone(name, classifier, tmp_path):
    """A torchvision classification checkpoint (as users copy to offline machines) fills the backbone."""
    state_dict = classifier(weights=None).state_dict()
    if name.startswith("densenet"):  # torchvision's DenseNet files still use the legacy 'norm.1' names
        state_dict = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v
                      for k, v in state_dict.items()}
    path = tmp_path / "imagenet.pth"
    torch.save(state_dict, path)
    net = build_arch(name, NUM_CLASSES)
    assert load_weights(net, str(path)) == "backbone"
    assert net.backbone_pretrained and net.param_groups()["pretrained"]
    prefix = "features." if name.startswith("densenet") else ""
    saved = {k.replace("norm.1.", "norm1.").replace("conv.2.", "conv2."): v for k, v in state_dict.items()}
    for key, value in net.backbone.state_dict().items():
        assert torch.equal(value, saved[prefix + key]), key


def test_mismatched_and_missing_weights_fail_in_one_line(nets, tmp_path):
    path = tmp_path / "small.pt"
    torch.save(nets("unet_small").state_dict(), path)
    with pytest.raises(WeightsError) as e:
        load_weights(nets("resnet50_unet"), str(path))
    assert "\n" not in str(e.value) and str(path) in str(e.value)
    with pytest.raises(WeightsUnavailableError) as e:
        build_arch("unet_small", NUM_CLASSES, weights=str(tmp_path / "absent.pt"))
    assert "\n" not in str(e.value) and "absent.pt" in str(e.value)


@pytest.mark.parametrize("key, caffe", [
    ("Scale.layer5.conv2d_list.0.weight", True),  # Hung et al.'s COCO DeepLab v2
    ("layer5.conv2d_list.3.bias", True),  # the paper's release
    ("base.layer2.block1.reduce.conv.weight", True),  # kazuto1011/deeplab-pytorch
    ("res2a_branch2a.weight", True),  # raw Caffe names
    ("layer2.0.conv1.weight", False),  # torchvision ResNet
    ("backbone.layer2.0.downsample.0.weight", False),
])
def test_caffe_resnet_keys(key, caffe):
    assert (caffe_resnet_key({key: torch.zeros(1)}) is not None) == caffe


def test_caffe_state_dict_is_refused(nets, tmp_path):
    net = nets("deeplabv2_resnet101")
    caffe = {f"Scale.{k}": v for k, v in net.backbone.state_dict().items()}  # same shapes, other network
    caffe.update({f"Scale.layer5.conv2d_list.{i}.weight": torch.zeros(21, 2048, 3, 3) for i in range(4)})
    path = tmp_path / "resnet101COCO.pth"
    torch.save(caffe, path)
    with pytest.raises(WeightsError) as e:
        load_weights(net, str(path))
    assert "\n" not in str(e.value) and "Caffe" in str(e.value) and "--no-pretrained" in str(e.value)


def test_dense_unet_min_input_is_the_smallest_size_that_runs(nets):
    net = nets("densenet161_unet").eval()
    assert net.min_input == 29
    with torch.no_grad():
        assert net(torch.randn(1, 3, 29, 40)).shape[-2:] == (29, 40)
        with pytest.raises(RuntimeError):
            net(torch.randn(1, 3, 28, 40))


def test_too_small_crop_for_the_dense_unet_is_one_line(tmp_path):
    from click.testing import CliRunner

    import train_seg_semisup
    out = tmp_path / "run"
    result = CliRunner().invoke(train_seg_semisup.main, [
        "--arch", "densenet161_unet", "--no-pretrained", "--crop-size", "28,40", "--synthetic-n-train", "8",
        "--n-sup", "4", "--iters", "1", "--out-dir", str(out)], catch_exceptions=False)
    assert result.exit_code != 0 and "at least 29×29" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()
