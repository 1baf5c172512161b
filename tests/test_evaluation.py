"""Paper A's evaluation instruments: the deception protocol, the paired bootstrap, and the score cache."""
import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from balstyle.transfer.evaluation import build_scorer, deceived, evaluation_pairs, nearest, paired_interval, score_model, score_models
from balstyle.transfer.models import StyleTransfer, blend


def test_deception_on_painters_known_by_construction():
    "Three painters whose works sit at three corners; a pastiche deceives exactly when it lands in its own painter's corner."
    rng = np.random.default_rng(0)
    corners = {"a": (0.0, 0.0), "b": (10.0, 0.0), "c": (0.0, 10.0)}
    artists = [a for a in corners for _ in range(5)]
    gallery = torch.tensor(np.array([np.add(corners[a], rng.normal(0, 0.3, 2)) for a in artists]), dtype=torch.float32)
    style_of = ["a", "b", "c", "a", "b", "c"]
    landed = ["a", "b", "c", "b", "c", "a"]                  # the first three land at their own painter's corner
    queries = torch.tensor(np.array([np.add(corners[a], rng.normal(0, 0.3, 2)) for a in landed]), dtype=torch.float32)
    assert deceived(queries, style_of, gallery, artists).tolist() == [True, True, True, False, False, False]
    ceiling = deceived(gallery, artists, gallery, artists, torch.arange(len(gallery)))
    assert ceiling.all()                                     # every work's nearest other work is by its painter
    assert nearest(gallery[:1], gallery, torch.tensor([0])).item() != 0   # leave-one-out never returns the query itself


@given(n=st.integers(20, 300), p=st.floats(0.05, 0.95))
@settings(max_examples=15, deadline=None)
def test_bootstrap_of_a_mean_of_bernoulli_outcomes_matches_the_binomial(n, p):
    "The bootstrap distribution of a mean of n 0/1 outcomes is exactly Binomial(n, k/n)/n: its percentile interval is the binomial's."
    k = max(1, min(n - 1, round(p * n)))
    outcome = np.r_[np.ones(k), np.zeros(n - k)]
    estimate, low, high = paired_interval(np.zeros(n), outcome, n_resamples=20_000, seed=1)
    assert estimate == pytest.approx(k / n)
    assert abs(low - scipy.stats.binom.ppf(0.025, n, k / n) / n) <= 1.01 / n
    assert abs(high - scipy.stats.binom.ppf(0.975, n, k / n) / n) <= 1.01 / n


def test_paired_interval_uses_the_pairing():
    "Two noisy scores that differ by a constant on every pair: independent resampling would blur it, pairing does not."
    base = np.random.default_rng(0).normal(0, 10, 500)
    estimate, low, high = paired_interval(base, base - 0.5)
    assert estimate == pytest.approx(-0.5) and high - low < 1e-9
    with pytest.raises(ValueError, match="equal 1-d shapes"): paired_interval(np.zeros(3), np.zeros(4))


class Toy(StyleTransfer):
    "A deterministic stand-in model that counts its calls and can fail on a chosen call."
    def __init__(self, fail_at: int | None = None, gain: float = 0.5):
        super().__init__()
        self.calls, self.fail_at, self.gain = 0, fail_at, gain
    def encode_style(self, style): return style.mean((2, 3), keepdim=True)
    def transfer(self, content, codes, weights, alpha):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at: raise KeyboardInterrupt("killed")
        return self.gain * content + alpha * blend(codes, weights)


@pytest.fixture(scope="module")
def smoke():
    pairs = evaluation_pairs("smoke")
    return pairs, build_scorer(pairs, progress=False)


def test_the_score_cache_follows_the_model_checksum(smoke, tmp_path):
    pairs, scorer = smoke
    first = Toy()
    table = score_model(first, pairs, scorer, "checksum-1", "toy", batch_size=8, folder=tmp_path, progress=False)
    assert first.calls == len(pairs) // 8 and len(table) == len(pairs)
    again = Toy()
    assert score_model(again, pairs, scorer, "checksum-1", "toy", folder=tmp_path, progress=False).equals(table)
    assert again.calls == 0                                            # unchanged checksum: read, not rescored
    retrained = Toy()
    score_model(retrained, pairs, scorer, "checksum-2", "toy", batch_size=8, folder=tmp_path, progress=False)
    assert retrained.calls == len(pairs) // 8                          # a changed checksum is scored again


def test_a_killed_scoring_pass_resumes_where_it_stopped(smoke, tmp_path):
    pairs, scorer = smoke
    with pytest.raises(KeyboardInterrupt):
        score_model(Toy(fail_at=5), pairs, scorer, "k", "toy", batch_size=4, chunk=8, folder=tmp_path / "a", progress=False)
    resumed = Toy()
    table = score_model(resumed, pairs, scorer, "k", "toy", batch_size=4, chunk=8, folder=tmp_path / "a", progress=False)
    assert resumed.calls == (len(pairs) - 16) // 4                     # two chunks (16 pairs) were kept
    whole = score_model(Toy(), pairs, scorer, "k", "toy", batch_size=4, chunk=8, folder=tmp_path / "b", progress=False)
    assert table.equals(whole) and list(table.index) == list(pairs.index)


def test_scoring_models_together_gives_each_model_its_own_scores(smoke, tmp_path):
    "Sharing the images and their features across models changes no number: together equals one by one."
    pairs, scorer = smoke
    together = score_models({"a": (Toy(gain=0.5), "a1"), "b": (lambda: Toy(gain=0.9), "b1")}, pairs, scorer, batch_size=8,
                            folder=tmp_path / "together", progress=False)
    for name, gain, checksum in (("a", 0.5, "a1"), ("b", 0.9, "b1")):
        alone = score_model(Toy(gain=gain), pairs, scorer, checksum, name, batch_size=8, folder=tmp_path / name, progress=False)
        assert together[name].equals(alone), name
    assert not together["a"]["classic"].equals(together["b"]["classic"])
