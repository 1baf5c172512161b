"""Paper B's training stages: exact resume, the pipeline's hand-over between stages, and the classifier's exact expectation."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from balstyle.stylespace.metric import nested_dropout_weights
from balstyle.stylespace.train import (NestedArtistClassifier, load_stage, portraits, space_config, style_space,
                                       train_space)
from balstyle.loop import TrainingInterrupted, load_checkpoint
from test_train import assert_same_weights, weights


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    "The whole smoke pipeline in a cache of its own (the smoke portraits are made there, in a few seconds)."
    mp = pytest.MonkeyPatch()
    mp.setenv("BALSTYLE_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield style_space("smoke", progress=False)
    mp.undo()


@pytest.mark.parametrize("stage", ["metric", "gan"])
def test_resume_after_an_interruption_is_bit_identical(smoke_runs, tmp_path, monkeypatch, stage):
    "The GAN stage has two optimisers, fresh noise every step and random discriminator patches: all must resume exactly."
    monkeypatch.setenv("BALSTYLE_CACHE", str(Path(smoke_runs["metric"]).parents[1]))
    config = json.loads((smoke_runs[stage] / "run.json").read_text())["config"]
    config = space_config(stage, "smoke", options=config["options"], steps=5, checkpoint_every=100)
    whole = train_space(config, out=tmp_path / "whole", progress=False)
    with pytest.raises(TrainingInterrupted, match="at step 2"):
        train_space(config, out=tmp_path / "part", progress=False, stop_at=2)
    assert load_checkpoint(tmp_path / "part" / "checkpoint.pt")["step"] == 2
    part = train_space(config, out=tmp_path / "part", progress=False, resume=True)
    assert_same_weights(weights(whole), weights(part))
    summary = lambda f: {k: v for k, v in json.loads((f / "run.json").read_text()).items() if k not in ("seconds", "weights")}
    assert summary(whole) == summary(part)                     # same final losses, evaluation and pruned size


def test_later_stages_are_built_on_the_earlier_ones(smoke_runs):
    metric, vae, gan = (json.loads((smoke_runs[s] / "run.json").read_text()) for s in ("metric", "vae", "gan"))
    assert vae["config"]["options"]["style_run"] == str(smoke_runs["metric"])
    assert vae["config"]["options"]["style_dims"] == metric["kept_dims"] == gan["config"]["options"]["style_dims"]
    assert gan["config"]["options"]["content_dims"] == vae["kept_dims"]
    assert gan["code"]["noise"] == gan["config"]["dims"] - metric["kept_dims"] - vae["kept_dims"] > 0
    config, modules, _ = load_stage(smoke_runs["vae"])
    assert modules["normaliser"].mean.shape == (metric["kept_dims"],)
    assert not any(p.requires_grad for m in modules.values() for p in m.parameters())


def test_a_stage_without_run_json_is_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_stage(tmp_path)


def test_real_faces_by_artist_keep_artists_with_enough_works(tmp_path):
    "The paper-scale reader on a small fixture: one folder per artist, the 50-work rule, the paper's test split."
    for artist, works in (("kept_a", 50), ("kept_b", 60), ("dropped", 49)):
        (tmp_path / artist).mkdir()
        for i in range(works): Image.new("RGB", (20, 24), (i * 4, 10, 200)).save(tmp_path / artist / f"{i}.png")
    data = portraits(space_config("metric", "paper", data=str(tmp_path), image_size=16))
    assert data.artists == ["kept_a", "kept_b"] and data.factors is None
    assert torch.bincount(data.labels[data.indices("test")]).tolist() == [10, 10]      # max(10%, 10) per artist
    assert data.images[0][0].shape == (3, 16, 16)


@given(artists=st.integers(2, 6), dims=st.integers(1, 9), t=st.floats(0.5, 0.999), seed=st.integers(0, 1000))
@settings(max_examples=25, deadline=None)
def test_classifier_expectation_equals_the_loop_over_prefixes(artists, dims, t, seed):
    g = torch.Generator().manual_seed(seed)
    classifier = NestedArtistClassifier(artists, dims, t)
    codes, labels = torch.randn(5, dims, generator=g), torch.randint(0, artists, (5,), generator=g)
    w = nested_dropout_weights(dims, t)
    loop = sum(w[d - 1] * F.cross_entropy(classifier.head(F.pad(codes[:, :d], (0, dims - d))), labels) for d in range(1, dims + 1))
    assert torch.allclose(classifier(codes, labels), loop, rtol=1e-5, atol=1e-6)


def test_a_reloaded_metric_criterion_computes_the_same_loss():
    "The artist sizes |X_i| are state: a criterion rebuilt with other sizes and loaded gives the same eq 2."
    from balstyle.stylespace.metric import StyleMetricLoss
    trained = StyleMetricLoss([3, 5, 9], dims=4)
    loaded = StyleMetricLoss([1, 1, 1], dims=4)
    loaded.load_state_dict(trained.state_dict())
    codes, artists = torch.randn(6, 4), torch.tensor([0, 1, 2, 2, 1, 0])
    assert torch.equal(trained(codes, artists), loaded(codes, artists))


def test_code_sizes_residual_init_and_lab_error_are_checked_settings():
    from balstyle.stylespace.train import (PAPER_CODE_SIZES, SPACE_SCALES, check_code_sizes, check_lab_error, resolve_code_sizes,
                                           resolve_residual_init)
    assert resolve_code_sizes(None, "paper") == resolve_code_sizes("paper", "paper") == PAPER_CODE_SIZES == (32, 128)
    assert SPACE_SCALES["paper"]["code_dims"] - sum(PAPER_CODE_SIZES) == 352          # the paper's d_noise
    assert resolve_code_sizes(None, "cpu") == resolve_code_sizes(None, "smoke") == "pruned"
    assert resolve_code_sizes([4, 3], "smoke") == (4, 3)
    for sizes, message in (("paper", "code_sizes='paper' at cpu scale"), ((65, 1), "d_style = 65 exceeds"), ((64, 64), "no noise dimension"),
                           ((0, 3), "positive integers"), ("half", "code_sizes must be")):
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            resolve_code_sizes(sizes, "cpu")
    with pytest.raises(ValueError, match="code_sizes='pruned'.*no noise dimension"):
        check_code_sizes(64, 64, "cpu", "code_sizes='pruned' (the 2% rule's sizes)")   # what cpu's rule may pick
    assert resolve_residual_init("progressive", "paper") == {"G": "progressive", "D": "progressive"}
    with pytest.raises(ValueError, match="residual_init"): resolve_residual_init({"G": "shortcut"}, "cpu")
    with pytest.raises(ValueError, match="lab_error"): check_lab_error("Lab")


def test_unfit_code_sizes_are_refused_before_anything_trains(tmp_path, monkeypatch):
    monkeypatch.setenv("BALSTYLE_CACHE", str(tmp_path))
    with pytest.raises(ValueError, match="code_sizes=\\(9, 2\\) at smoke scale"):
        style_space("smoke", progress=False, code_sizes=(9, 2))
    assert not (tmp_path / "runs").exists()


def test_settings_pass_through_to_the_stages_and_are_recorded(smoke_runs, monkeypatch):
    from balstyle.stylespace.models import LAB_ERROR_WEIGHTS
    monkeypatch.setenv("BALSTYLE_CACHE", str(Path(smoke_runs["metric"]).parents[1]))
    runs = style_space("smoke", progress=False, stages=("metric", "vae", "gan"), code_sizes=(2, 3), residual_init="shortcut", lab_error="raw")
    assert runs["metric"] == smoke_runs["metric"] and runs["vae"] != smoke_runs["vae"]      # no setting concerns the style encoder
    metric, vae, gan = (json.loads((runs[s] / "run.json").read_text()) for s in ("metric", "vae", "gan"))
    assert vae["config"]["options"]["lab_error"] == "raw" and vae["config"]["options"]["code_sizes"] == [2, 3]
    assert gan["config"]["options"]["residual_init"] == {"G": "shortcut", "D": "shortcut"}
    assert (gan["config"]["options"]["style_dims"], gan["config"]["options"]["content_dims"]) == (2, 3)
    assert gan["code"]["noise"] == gan["config"]["dims"] - 5 and gan["code"]["sizes"] == [2, 3]
    assert gan["code"]["pruning_rule"] == {"style": metric["kept_dims"], "content": vae["kept_dims"]}
    _, modules, _ = load_stage(runs["vae"])
    assert modules["vae"].channel_weights.flatten().tolist() == list(LAB_ERROR_WEIGHTS["raw"])
    from balstyle.stylespace.nets import WNAdd
    from balstyle.stylespace.train import stage_modules
    gan_config, _, _ = load_stage(runs["gan"])
    fresh = stage_modules(gan_config, torch.ones(len(gan["artists"])))                    # the recorded setting builds the start
    mixes = [m.mix for net in fresh.values() for m in net.modules() if isinstance(m, WNAdd)]
    assert mixes and all((mix[:, 0] == 0).all() for mix in mixes)                          # every block its shortcut


def test_the_pairwise_criterion_keeps_the_training_counts_and_the_batches_their_epochs(smoke_runs, monkeypatch):
    from balstyle.stylespace.train import step_batches
    from balstyle.loop import batch_keys
    monkeypatch.setenv("BALSTYLE_CACHE", str(Path(smoke_runs["metric"]).parents[1]))
    config, modules, run = load_stage(smoke_runs["pairwise"])
    data = portraits(config)
    train = data.indices("train")
    assert modules["criterion"].counts.tolist() == torch.bincount(data.labels[train], minlength=len(data.artists)).float().tolist()
    assert config.options["eq1_estimate"] == "unbiased"
    n, wide = len(train), space_config("pairwise", "smoke", batch_size=48)
    batches = list(step_batches(data, "train", wide, 0))
    for step, (_, artists, index, epochs) in enumerate(batches):
        keys = batch_keys(step, 48, n, wide.seed, 0)
        assert index.tolist() == [int(train[k]) for k, _ in keys]
        assert epochs.tolist() == [(step * 48 + j) // n for j in range(48)]
        assert artists.tolist() == data.labels[index].tolist()
