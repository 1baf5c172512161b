"""`balstyle stylize` refuses bad sizes, weights, outputs and oversized images with clear errors, before any model is built (issue 22)."""
import numpy as np
import pytest
import torch
from PIL import Image

from balstyle.cli import MAX_PIXELS, main, writable_extensions
from balstyle.transfer.methods import METHODS, build_model


def image_file(path, size=(40, 48), seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def images(tmp_path):
    return dict(content=image_file(tmp_path / "c.png"), style=image_file(tmp_path / "s.png", seed=1), tiny=image_file(tmp_path / "t.png", (1, 1)),
                huge=str(tmp_path / "huge.png"), root=tmp_path)


def stylize(images, *args, content=None, method="adain"):
    return main(["stylize", content or images["content"], images["style"], "--method", method, "--device", "cpu", *args])


def error_of(capsys, status):
    err = capsys.readouterr().err
    assert status == 2, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("method", list(METHODS))
def test_a_size_below_the_methods_minimum_names_it(images, capsys, method):
    least = METHODS[method].model.min_size
    if least > 1:
        err = error_of(capsys, stylize(images, "-o", str(images["root"] / "p.png"), "--size", str(least - 1), method=method))
        assert f"needs at least {least} px" in err and method in err


def test_negative_sizes_and_non_finite_weights_are_usage_errors(images, capsys):
    with pytest.raises(SystemExit) as e: stylize(images, "-o", str(images["root"] / "p.png"), "--size", "-5")
    assert e.value.code == 2 and "below the least allowed value, 0" in capsys.readouterr().err
    for bad in ("nan", "inf", "-1"):
        with pytest.raises(SystemExit) as e: stylize(images, "-o", str(images["root"] / "p.png"), "--style-weights", bad)
        assert e.value.code == 2 and bad in capsys.readouterr().err


def test_the_library_refuses_non_finite_style_weights_too():
    model, x = build_model("adain").eval(), torch.rand(1, 3, 32, 32)
    for weights in ([float("nan"), 1.0], [float("inf"), 1.0]):
        with pytest.raises(ValueError, match="finite, non-negative weight"): model.stylize(x, [x, x], weights)


def test_a_1x1_image_at_its_own_size_is_refused_by_name(images, capsys):
    err = error_of(capsys, stylize(images, "-o", str(images["root"] / "p.png"), "--size", "0", content=images["tiny"]))
    assert images["tiny"] in err and "1×1 px at its own size" in err and "at least 9 px" in err


def test_an_output_without_an_image_extension_or_a_folder_is_refused(images, capsys):
    err = error_of(capsys, stylize(images, "-o", str(images["root"] / "pastiche"), "--size", "32"))
    assert "needs an image extension" in err and ".png" in err and ".jpg" in err
    err = error_of(capsys, stylize(images, "-o", str(images["root"]), "--size", "32"))
    assert "is a folder" in err
    assert ".png" in writable_extensions() and ".webp" in writable_extensions()


def test_an_image_over_max_pixels_is_refused_before_it_is_decoded(images, capsys):
    Image.new("RGB", (3000, 2000), (120, 30, 200)).save(images["huge"])
    err = error_of(capsys, stylize(images, "-o", str(images["root"] / "p.png"), "--size", "0", content=images["huge"]))
    assert images["huge"] in err and "3000×2000 px at its own size, 6.0 Mpx" in err and f"--max-pixels {MAX_PIXELS}" in err
    err = error_of(capsys, stylize(images, "-o", str(images["root"] / "p.png"), "--size", "1024", "--max-pixels", "1000000", content=images["huge"]))
    assert "1536×1024 px at --size 1024, 1.6 Mpx, above --max-pixels 1000000" in err


def test_a_single_array_as_magentas_tf_weights_says_what_is_accepted(images, capsys):
    np.save(images["root"] / "vars.npy", np.zeros(3))
    err = error_of(capsys, stylize(images, "-o", str(images["root"] / "p.png"), "--size", "32", "--weights", f"tf={images['root'] / 'vars.npy'}",
                                   method="magenta"))
    assert "vars.npy holds one array" in err and ".npz" in err
