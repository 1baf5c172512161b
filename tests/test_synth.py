"""The procedural data sets: the command, the cache, interrupted generation, and the same bytes on every machine."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

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


# --- the same bytes on every machine and at every thread count (data/synth_hashes.json) ---------------------------

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
CHECK = "import json; from balstyle.standins.synth import check_hashes; print(json.dumps(check_hashes()))"


def committed_manifest() -> dict:
    "The committed hash manifest; skips where the libraries that draw and encode the images are not the pinned ones."
    manifest = json.loads((ROOT / synth.SYNTH_HASHES).read_text())
    assert manifest["synth_version"] == synth.SYNTH_VERSION, "SYNTH_VERSION changed: run synth.write_hash_manifest()"
    if manifest["libraries"] != synth._library_versions():
        pytest.skip(f"the manifest holds the bytes of {manifest['libraries']}, installed are {synth._library_versions()}")
    return manifest


def numpy_dispatch_targets() -> str:
    "NumPy's optional SIMD targets that this CPU has (what NPY_DISABLE_CPU_FEATURES can switch off)."
    from numpy._core._multiarray_umath import __cpu_features__
    return " ".join(t for t in ("X86_V3", "X86_V4", "AVX512_ICL", "AVX512_SPR") if __cpu_features__.get(t))


@pytest.mark.parametrize("variant", ["1 thread", "2 threads", "numpy baseline, 2 threads"])
def test_sampled_images_drawn_in_a_fresh_process_match_the_committed_hashes(variant):
    committed_manifest()
    threads = "1" if variant == "1 thread" else "2"
    env = os.environ | {var: threads for var in THREAD_VARS}
    if variant.startswith("numpy baseline"):
        if not numpy_dispatch_targets(): pytest.skip("this CPU has only NumPy's baseline: the same as '2 threads'")
        env["NPY_DISABLE_CPU_FEATURES"] = numpy_dispatch_targets()
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}, f"images whose bytes differ ({variant}): {done.stdout[-3000:]}"


def test_an_item_drawn_again_has_the_bytes_of_its_file(tmp_path):
    folder = synth_dataset("textures", "smoke", root=tmp_path)
    items = synth.synth_items("textures", "smoke", 0)
    assert sorted(item.path for item in items) == sorted(str(p.relative_to(folder)) for p in (folder / "images").rglob("*.jpg"))
    for item in items[::7]:
        assert synth.item_digest(item) == synth.item_digest(item) == hashlib.sha256((folder / item.path).read_bytes()).hexdigest()


def test_cached_cpu_sets_match_the_committed_hashes():
    manifest = committed_manifest()
    checked = 0
    for key, expected in manifest["sets"].items():
        name, scale = key.rsplit("_", 1)
        if scale != "cpu" or not (synth.synth_folder(name, scale, manifest["seed"]) / "manifest.json").is_file(): continue
        assert synth.set_hashes(name, scale, manifest["seed"]) == expected, key
        checked += 1
    if not checked: pytest.skip("no cpu set is cached here (balstyle data make NAME --scale cpu makes one)")
