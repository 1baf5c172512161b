"""`balstyle stylize` warns when a decoder comes without the encoder it was trained on (issue 17, fix 8)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from balstyle.cli import main
from balstyle.features import vgg_normalised
from balstyle.transfer.adain import AdaIN

WARNING = "decoder given without its encoder"


def image_file(path, seed: int, size=(40, 48)):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    "An AdaIN decoder and a `vgg_normalised` encoder in the published layouts, and a content and a style image."
    root = tmp_path_factory.mktemp("adain")
    torch.manual_seed(0)
    torch.save(AdaIN().decoder.state_dict(), root / "decoder.pth")
    torch.save(vgg_normalised().state_dict(), root / "vgg_normalised.pth")
    return dict(decoder=root / "decoder.pth", encoder=root / "vgg_normalised.pth",
                content=image_file(root / "c.png", 0), style=image_file(root / "s.png", 1), root=root)


def stylize(files, tmp_path, *weights):
    out = tmp_path / "pastiche.png"
    status = main(["stylize", files["content"], files["style"], "-o", str(out), "--method", "adain", "--size", "32",
                   "--device", "cpu", *[a for w in weights for a in ("--weights", w)]])
    assert status == 0 and out.is_file()


def test_decoder_without_encoder_warns(files, tmp_path, capsys):
    stylize(files, tmp_path, f"decoder={files['decoder']}")
    err = capsys.readouterr().err
    assert WARNING in err
    assert "--weights encoder=vgg_normalised.pth" in err and "stand-in encoder" in err


def test_decoder_with_its_encoder_does_not_warn(files, tmp_path, capsys):
    stylize(files, tmp_path, f"encoder={files['encoder']}", f"decoder={files['decoder']}")
    assert "warning" not in capsys.readouterr().err


def test_a_decoder_balstyle_trained_does_not_warn(files, tmp_path, capsys):
    "`balstyle train` trains on the stand-in encoder: its run folder's decoder needs no encoder file."
    weights = tmp_path / "run" / "weights"
    weights.mkdir(parents=True)
    (weights / "decoder.pth").write_bytes(files["decoder"].read_bytes())
    (tmp_path / "run" / "run.json").write_text(json.dumps({"config": {"method": "adain"}}))
    stylize(files, tmp_path, f"decoder={weights / 'decoder.pth'}")
    assert "warning" not in capsys.readouterr().err
