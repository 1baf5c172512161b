"""The AST models against the official checkpoints' layouts (docs/references.md: The shared encoder and decoder,
LinearTransfer, SANet), and at work."""
import math

import pytest
import torch

from balstyle.core import WeightsMismatchError
from balstyle.transfer.adain import AdaIN
from balstyle.transfer.models import adain, mean_std
from balstyle.transfer.linear import LinearTransfer
from balstyle.transfer.magenta import Magenta
from balstyle.transfer.sanet import SANet

DECODER = {1: (256, 512), 5: (256, 256), 8: (256, 256), 11: (256, 256), 14: (128, 256), 18: (128, 128), 21: (64, 128), 25: (64, 64), 28: (3, 64)}
DECODER_PTH = {f"{i}.weight": (o, c, 3, 3) for i, (o, c) in DECODER.items()} | {f"{i}.bias": (o,) for i, (o, c) in DECODER.items()}
DEC_R41_PTH = {f"conv{11 + k}.{p}": s for k, (i, (o, c)) in enumerate(DECODER.items()) for p, s in (("weight", (o, c, 3, 3)), ("bias", (o,)))}
VGG_R41 = [(3, 3, 1), (64, 3, 3), (64, 64, 3), (128, 64, 3), (128, 128, 3), (256, 128, 3), (256, 256, 3), (256, 256, 3), (256, 256, 3), (512, 256, 3)]
VGG_R41_PTH = {f"conv{k + 1}.{p}": s for k, (o, c, ks) in enumerate(VGG_R41) for p, s in (("weight", (o, c, ks, ks)), ("bias", (o,)))}
R41_PTH = {f"{net}.{k}": s for net in ("snet", "cnet") for k, s in {
    "convs.0.weight": (256, 512, 3, 3), "convs.0.bias": (256,), "convs.2.weight": (128, 256, 3, 3), "convs.2.bias": (128,),
    "convs.4.weight": (32, 128, 3, 3), "convs.4.bias": (32,), "fc.weight": (1024, 1024), "fc.bias": (1024,)}.items()} | {
    "compress.weight": (32, 512, 1, 1), "compress.bias": (32,), "unzip.weight": (512, 32, 1, 1), "unzip.bias": (512,)}
TRANSFORMER_PTH = {f"sanet{l}.{m}.{p}": ((512, 512, 1, 1) if p == "weight" else (512,)) for l in ("4_1", "5_1")
                   for m in ("f", "g", "h", "out_conv") for p in ("weight", "bias")} | {"merge_conv.weight": (512, 512, 3, 3), "merge_conv.bias": (512,)}


def random_file(path, layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.randn(s, generator=g) for k, s in layout.items()}
    torch.save(state, path)
    return state


def count(layout): return sum(math.prod(s) for s in layout.values())


def test_adain_loads_the_official_decoder_strictly(tmp_path):
    state = random_file(tmp_path / "decoder.pth", DECODER_PTH)
    model = AdaIN(decoder_weights=tmp_path / "decoder.pth")
    assert torch.equal(model.decoder[28].weight, state["28.weight"])
    assert sum(p.numel() for p in model.decoder.parameters()) == count(DECODER_PTH) == 3_505_219


def test_sanet_loads_the_official_transformer_and_decoder(tmp_path):
    t = random_file(tmp_path / "transformer_iter_500000.pth", TRANSFORMER_PTH, 1)
    random_file(tmp_path / "decoder_iter_500000.pth", DECODER_PTH, 2)
    model = SANet(transform_weights=tmp_path / "transformer_iter_500000.pth", decoder_weights=tmp_path / "decoder_iter_500000.pth")
    assert torch.equal(model.transform.sanet5_1.h.weight, t["sanet5_1.h.weight"])
    assert sum(p.numel() for p in model.transform.parameters()) == count(TRANSFORMER_PTH) == 4_461_056


def test_linear_transfer_loads_its_three_official_files(tmp_path):
    e = random_file(tmp_path / "vgg_r41.pth", VGG_R41_PTH, 3)
    d = random_file(tmp_path / "dec_r41.pth", DEC_R41_PTH, 4)
    r = random_file(tmp_path / "r41.pth", R41_PTH, 5)
    model = LinearTransfer(tmp_path / "vgg_r41.pth", tmp_path / "dec_r41.pth", tmp_path / "r41.pth")
    assert torch.equal(model.encoder.conv10.weight, e["conv10.weight"])
    assert torch.equal(model.decoder.conv19.bias, d["conv19.bias"])
    assert torch.equal(model.transform.cnet.fc.weight, r["cnet.fc.weight"])
    assert sum(p.numel() for p in model.transform.parameters()) == count(R41_PTH) == 5_156_192
    assert sum(p.numel() for p in model.encoder.parameters()) == count(VGG_R41_PTH)


def test_a_file_that_does_not_fit_names_its_keys(tmp_path):
    bad = dict(TRANSFORMER_PTH); bad.pop("merge_conv.bias"); bad["sanet4_1.f.weight"] = (512, 256, 1, 1); bad["sanet6_1.f.weight"] = (1,)
    random_file(tmp_path / "transformer_iter_1.pth", bad)
    with pytest.raises(WeightsMismatchError) as e: SANet(transform_weights=tmp_path / "transformer_iter_1.pth")
    message = str(e.value)
    assert "transformer_iter_1.pth" in message and "merge_conv.bias" in message and "sanet6_1.f.weight" in message and "sanet4_1.f.weight" in message


def test_adain_layer_against_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    c, s = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 6, 2, generator=g) * 2 + 1
    out = adain(c, s)
    for b in range(2):
        for ch in range(3):
            cv, sv = c[b, ch].flatten(), s[b, ch].flatten()
            expected = (cv - cv.mean()) / torch.sqrt(cv.var() + 1e-5) * torch.sqrt(sv.var() + 1e-5) + sv.mean()
            torch.testing.assert_close(out[b, ch].flatten(), expected)
    mean, std = mean_std(s)
    assert mean.shape == (2, 3, 1, 1) and torch.allclose(std[0, 0, 0, 0], torch.sqrt(s[0, 0].flatten().var() + 1e-5))


@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("method", [AdaIN, SANet, LinearTransfer, Magenta])
def test_models_stylise_bundled_photos_on_the_cpu(method, size):
    from balstyle.data import bundled_photos, to_tensor_transform
    photos = list(bundled_photos().values())
    to_tensor = to_tensor_transform(size)
    content, style = to_tensor(photos[0])[None], to_tensor(photos[5])[None]
    torch.manual_seed(0)
    model = method().eval()
    with torch.no_grad(): raw = model(content, style, alpha=0.7)
    assert raw.shape == content.shape and torch.isfinite(raw).all()
    out = model.stylize(content, [style, content], [0.8, 0.2], preserve_colour=(size == 256))
    assert out.shape == content.shape and 0 <= out.min() and out.max() <= 1 and out.std() > 0


def test_the_stylize_command(tmp_path, capsys):
    import numpy as np
    from PIL import Image
    from balstyle.cli import main
    from balstyle.transfer.magenta import magenta_variable_names
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(tmp_path / "content.png")
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "style.jpg")
    random_file(tmp_path / "decoder.pth", DECODER_PTH)
    assert main(["stylize", str(tmp_path / "content.png"), str(tmp_path / "style.jpg"), str(tmp_path / "style.jpg"), "-o", str(tmp_path / "out.png"),
                 "--weights", f"decoder={tmp_path / 'decoder.pth'}", "--alpha", "0.5", "--style-weights", "1", "2", "--size", "64"]) == 0
    assert Image.open(tmp_path / "out.png").size == (82, 64)              # shorter side 64, aspect kept
    variables = {n: (np.abs(rng.normal(1, 0.1, s)) if "moving_variance" in n else rng.normal(0, 0.05, s)).astype(np.float32)
                 for n, s in magenta_variable_names().items()}
    np.savez(tmp_path / "magenta.npz", **variables)
    assert main(["stylize", str(tmp_path / "content.png"), str(tmp_path / "style.jpg"), "-o", str(tmp_path / "m.png"), "--method", "magenta",
                 "--weights", f"tf={tmp_path / 'magenta.npz'}", "--size", "64"]) == 0
    assert main(["stylize", str(tmp_path / "content.png"), str(tmp_path / "style.jpg"), "-o", str(tmp_path / "x.png"),
                 "--weights", f"decoder={tmp_path / 'missing.pth'}"]) == 2
    assert "missing.pth" in capsys.readouterr().err
