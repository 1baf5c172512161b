"""The method registry: every per-method list is read from `METHODS`, and what `balstyle train` writes, `stylize` loads."""
import dataclasses

import numpy as np
import papermill
import pytest
import torch
from PIL import Image

import balstyle.transfer.methods as registry
from balstyle.cli import build_parser, main
from balstyle.runner import STUDIES, studies_dir
from balstyle.transfer.methods import METHODS, STAGES, get_method
from balstyle.transfer.train import build_run, run_config, train


def choices(parser, command: str, option: str) -> list:
    "The choices of `option` (a flag or a positional's dest) of a `balstyle` sub-command."
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return list(next(a for a in sub._actions if option in (a.dest, *a.option_strings)).choices)


def test_every_per_method_list_is_the_registry():
    parser = build_parser()
    assert choices(parser, "stylize", "--method") == list(METHODS)
    assert choices(parser, "train", "method") == [*METHODS, *STAGES]
    table4 = STUDIES["table4"]
    declared = papermill.inspect_notebook(str(studies_dir() / table4.notebook))
    assert declared["methods"]["default"] == "None"                   # the notebook's default: every registered method
    assert all(table4.parameters(scale)["methods"] is None for scale in table4.presets)
    assert [m.title for m in METHODS.values()] == ["GoogleMagenta", "AdaIN", "LinearTransfer", "SANet"]   # Table 4's order


def test_a_fifth_method_is_one_registry_entry(monkeypatch, tmp_path):
    "A copy of AdaIN under a new name, added to METHODS alone, reaches the trainer, both commands and the stylize path."
    fifth = dataclasses.replace(get_method("adain"), name="adain2", title="AdaIN-2", abbreviation="AI2")
    monkeypatch.setitem(registry.METHODS, "adain2", fifth)
    parser = build_parser()
    assert "adain2" in choices(parser, "stylize", "--method") and "adain2" in choices(parser, "train", "method")
    assert run_config("adain2", "balanced", "smoke").steps == 2
    folder = train("adain2", "balanced", "smoke", out=tmp_path / "run", steps=1, progress=False)
    assert folder.name == "run" and (folder / "weights" / "decoder.pth").is_file()
    monkeypatch.delitem(registry.METHODS, "adain2")
    with pytest.raises(ValueError, match="method must be one of"): run_config("adain2", "balanced", "smoke")


def image_file(path, seed: int, size=(48, 40)):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.mark.parametrize("method", list(METHODS))
def test_what_train_writes_stylize_loads(method, tmp_path):
    folder = train(method, "classic", "smoke", out=tmp_path / "run", steps=1, progress=False)
    spec = get_method(method)
    written = sorted(f.name for f in (folder / "weights").iterdir())
    assert written == sorted(spec.weight_files.values())
    args = [f"{part}={folder / 'weights' / name}" for part, name in spec.weight_files.items()]
    out = tmp_path / "pastiche.png"
    status = main(["stylize", image_file(tmp_path / "c.png", 0), image_file(tmp_path / "s.png", 1), "-o", str(out),
                   "--method", method, "--size", "64", "--device", "cpu", *[a for w in args for a in ("--weights", w)]])
    assert status == 0 and min(Image.open(out).size) == 64                  # the shorter side at --size
    loaded = spec.build({part: folder / "weights" / name for part, name in spec.weight_files.items()})
    for part, name in spec.weight_files.items():
        saved = torch.load(folder / "weights" / name, weights_only=True)
        mine = getattr(loaded, part).state_dict()
        assert all(torch.equal(mine[k], v) for k, v in zip(mine, saved.values())), (method, part)


def test_build_run_prepares_a_run_without_training_it(tmp_path):
    "The first half of `train_config`: the model started as the config says and β calibrated, no step taken."
    config = run_config("sanet", "classic", "smoke", transform_init="identity", decoder_init=None, steps=1)
    run = build_run(config, tmp_path / "run", device=torch.device("cpu"))
    assert torch.count_nonzero(run.model.transform.sanet4_1.out_conv.weight) == 0          # the identity start
    assert run.beta * run.calibration["style"] == pytest.approx(run.calibration["content"])
    assert run.loop.start == 0 and not (tmp_path / "run" / "log.csv").exists() and (tmp_path / "run" / "config.json").is_file()
