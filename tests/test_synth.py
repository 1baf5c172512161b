"""The procedural data sets: the command, the cache, and interrupted generation."""
import json

import numpy as np
import pytest

import balstyle.standins.synth as synth
from balstyle.cli import main
from balstyle.data import painter_by_numbers
from balstyle.standins.synth import SYNTH_SCALES, content_image, item_rng, synth_dataset


def test_data_make_writes_once_and_reuses(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BALSTYLE_CACHE", str(tmp_path))
    assert main(["data", "make", "painters", "--scale", "smoke", "--seed", "3"]) == 0
    folder = tmp_path / "synth" / f"painters_smoke_seed3_v{synth.SYNTH_VERSION}"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["sizes"] == SYNTH_SCALES["painters"]["smoke"] and manifest["images_per_second"] > 0
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    assert main(["data", "make", "painters", "--scale", "smoke", "--seed", "3"]) == 0
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp            # reused, not remade
    ds = painter_by_numbers(folder, "test")
    assert len(ds.classes) == 32 and ds[0][0].shape == (3, 128, 128)
    assert main(["data", "list"]) == 0 and "portraits" in capsys.readouterr().out


def test_an_interrupted_generation_leaves_no_set_that_looks_complete(tmp_path, monkeypatch):
    def crash(root, seed, **sizes):
        (root / "half.txt").write_text("partial")
        raise KeyboardInterrupt
    monkeypatch.setitem(synth.WRITERS, "textures", crash)
    with pytest.raises(KeyboardInterrupt): synth_dataset("textures", "smoke", root=tmp_path)
    left = [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"]              # the empty lock file of `exclusive` may stay
    assert not left, f"neither a set nor its temporary folder may remain: {left}"
    monkeypatch.undo()
    folder = synth_dataset("textures", "smoke", root=tmp_path)
    assert (folder / "manifest.json").is_file() and not (folder / "half.txt").exists()


def test_items_depend_on_seed_set_and_index_only():
    a = content_image(48, item_rng(0, "content", 0, 5))[1]
    assert np.array_equal(a, content_image(48, item_rng(0, "content", 0, 5))[1])
    assert not np.array_equal(a, content_image(48, item_rng(1, "content", 0, 5))[1])
    with pytest.raises(ValueError, match="real corpus"): synth_dataset("content", "paper")
    with pytest.raises(ValueError, match="sketches"): synth_dataset("sketches", "cpu")
