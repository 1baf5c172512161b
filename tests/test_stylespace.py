"""Paper B's building blocks: Lab colour, strict weight norm, nested dropout's exact expectation, eq 2 and eq 10."""
import numpy as np
import skimage.color
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from balstyle.stylespace.metric import (StyleMetricLoss, nested_dropout_weights, nested_expectation, prefix_sq_distances,
                                        variance_ratio)
from balstyle.stylespace.nets import LevelEncoder, LevelGenerator, WNConv2d, WNConvTranspose2d, WNLinear, lab_to_rgb, rgb_to_lab

seeds = st.integers(0, 2**31 - 1)


@given(seed=seeds)
@settings(max_examples=20, deadline=None)
def test_lab_matches_scikit_image_and_round_trips(seed):
    rgb = torch.rand(1, 3, 5, 7, generator=torch.Generator().manual_seed(seed))
    lab = rgb_to_lab(rgb)
    oracle = skimage.color.rgb2lab(rgb[0].permute(1, 2, 0).numpy().astype(np.float64))
    scaled = np.concatenate([oracle[..., :1] / 50 - 1, oracle[..., 1:] / 110], -1)
    np.testing.assert_allclose(lab[0].permute(1, 2, 0).numpy(), scaled, atol=2e-3)
    torch.testing.assert_close(lab_to_rgb(lab), rgb, atol=1e-4, rtol=0)


@given(seed=seeds, scale=st.floats(1e-3, 1e3), stride=st.sampled_from([1, 2]))
@settings(max_examples=25, deadline=None)
def test_weight_normalised_layers_have_unit_norm_whatever_the_raw_weights(seed, scale, stride):
    torch.manual_seed(seed)
    conv, convt, lin = WNConv2d(4, 6, 3), WNConvTranspose2d(4, 6, stride + 2, stride), WNLinear(5, 3)
    with torch.no_grad():
        for layer in (conv, convt, lin): layer.weight.mul_(scale)
    close = dict(rtol=1e-4, atol=0)                   # the 1e-8 guard in the norm shifts tiny weights by ~1e-5
    torch.testing.assert_close(conv.normalised_weight().flatten(1).norm(dim=1), torch.ones(6), **close)
    torch.testing.assert_close(lin.normalised_weight().norm(dim=1), torch.ones(3), **close)
    torch.testing.assert_close(convt.normalised_weight().transpose(0, 1).flatten(1).norm(dim=1), torch.full((6,), float(stride)), **close)


@given(dims=st.integers(1, 40), t=st.floats(0.05, 0.999), seed=seeds, loss=st.sampled_from(["same", "diff"]))
@settings(max_examples=50, deadline=None)
def test_exact_nested_expectation_equals_the_brute_force_loop_over_prefixes(dims, t, seed, loss):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(3, dims, generator=g, dtype=torch.float64), torch.randn(3, dims, generator=g, dtype=torch.float64)
    h = torch.rand(dims, generator=g, dtype=torch.float64) + 0.2
    w = nested_dropout_weights(dims, t).double()
    assert abs(w.sum().item() - 1) < 1e-6
    fn = (lambda q: q) if loss == "same" else (lambda q: torch.exp(-q))
    brute = sum(w[d - 1] * fn((h[d - 1] * torch.linalg.vector_norm(x[:, :d] - y[:, :d], dim=1)) ** 2) for d in range(1, dims + 1))
    torch.testing.assert_close(nested_expectation(prefix_sq_distances(x, y), h, loss, t), brute)


def test_metric_loss_pulls_works_to_their_artist_and_classifies():
    torch.manual_seed(0)
    artists = torch.arange(4).repeat_interleave(8)
    truth = torch.randn(4, 6) * 3
    loss = StyleMetricLoss(torch.bincount(artists), dims=6, t=0.9)
    codes = (truth[artists] + 0.3 * torch.randn(32, 6)).requires_grad_()
    opt = torch.optim.Adam(list(loss.parameters()) + [codes], lr=0.05)
    first = loss(codes, artists).item()
    for _ in range(300):
        opt.zero_grad(); value = loss(codes, artists); value.backward(); opt.step()
    assert value.item() < 0.2 * first
    assert (loss.classify(codes.detach()) == artists).float().mean() == 1
    assert variance_ratio(codes.detach(), artists) < 0.05


def test_level_networks_shapes_and_size_errors():
    enc, gen = LevelEncoder(16, (8, 16), (1, 2), 16), LevelGenerator(16, (8, 16), (2, 1), 16)
    assert enc(torch.randn(2, 3, 16, 16)).shape == (2, 16) and gen(torch.randn(2, 16)).shape == (2, 3, 16, 16)
    try: LevelEncoder(4, (8, 16), (1, 1), 18); raise AssertionError("a size that the levels cannot halve must be refused")
    except ValueError as e: assert "multiple of 2^2" in str(e)


@given(b=st.integers(1, 3), side=st.integers(4, 12), patch=st.integers(1, 4), count=st.integers(1, 6), seed=seeds)
@settings(max_examples=40, deadline=None)
def test_random_patches_are_crops_of_their_own_image(b, side, patch, count, seed):
    from balstyle.stylespace.models import random_patches
    images = torch.randn(b, 2, side, side + 1, generator=torch.Generator().manual_seed(seed))
    patches = random_patches(images, patch, count, torch.Generator().manual_seed(seed))
    assert patches.shape == (b * count, 2, patch, patch)
    for k, p in enumerate(patches):
        windows = images[k // count].unfold(1, patch, 1).unfold(2, patch, 1)          # (2, H', W', p, p)
        assert (windows == p[:, None, None]).flatten(3).all(-1).all(0).any()


def test_consortium_views_have_the_papers_shapes():
    from balstyle.stylespace.models import ConsortiumDiscriminator
    d = ConsortiumDiscriminator(patch=64, features=(8,), blocks=(1,))
    assert [tuple(v.shape) for v in d.views(torch.rand(2, 3, 256, 256))] == [(2, 3, 64, 64), (8, 3, 64, 64), (32, 3, 64, 64)]


def _eq1_brute(codes, works, h, t):
    "Eq 1 with nested dropout on the whole set: every ordered pair of works, the diagonal included."
    counts, n = torch.bincount(works), len(works)
    pair = lambda loss, a, b: nested_expectation(prefix_sq_distances(codes[a], codes[b]), h, loss, t)
    same = sum(pair("same", a, b) for a in range(n) for b in range(n) if works[a] == works[b])
    diff = sum(pair("diff", a, b) for a in range(n) for b in range(n) if works[a] != works[b])
    return same / (counts ** 2).sum() + diff / (counts.sum() ** 2 - (counts ** 2).sum())


def _mean_over_pairs(codes, works, h, t):
    "The first estimate of eq 1: mean L'_same over the batch's same-artist pairs (diagonal included) + mean L'_diff over the rest."
    sq = prefix_sq_distances(codes[:, None, :], codes[None, :, :])
    same_pair = works[:, None] == works[None, :]
    diff = nested_expectation(sq, h, "diff", t)[~same_pair]
    return nested_expectation(sq, h, "same", t)[same_pair].mean() + (diff.mean() if diff.numel() else 0.0)


@given(seed=seeds, n=st.integers(3, 7), dims=st.integers(1, 4), t=st.floats(0.3, 0.99), data=st.data())
@settings(max_examples=30, deadline=None)
def test_eq1_estimate_averages_to_eq1_over_every_minibatch(seed, n, dims, t, data):
    "Every minibatch of a uniform draw without replacement is equally likely: their mean estimate is eq 1 on the whole set."
    from itertools import combinations
    from balstyle.stylespace.metric import pairwise_style_loss
    g = torch.Generator().manual_seed(seed)
    works = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=n, max_size=n).filter(lambda w: len(set(w)) > 1)))
    works = torch.unique(works, return_inverse=True)[1]                        # artists 0, 1, … with at least one work each
    codes, h = torch.randn(n, dims, generator=g, dtype=torch.float64), torch.rand(dims, generator=g, dtype=torch.float64) + 0.3
    b = data.draw(st.integers(2, n))
    counts = torch.bincount(works)
    mean = torch.stack([pairwise_style_loss(codes[list(s)], works[list(s)], h, counts, t) for s in combinations(range(n), b)]).mean()
    torch.testing.assert_close(mean, _eq1_brute(codes, works, h, t), rtol=1e-10, atol=1e-12)


def test_eq1_estimate_is_unbiased_across_an_epoch_boundary_and_the_mean_over_pairs_is_not():
    from itertools import combinations, permutations
    from balstyle.stylespace.metric import pairwise_style_loss
    g = torch.Generator().manual_seed(3)
    works = torch.tensor([0, 1, 1, 2, 2, 2])
    codes, h, t = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.rand(3, generator=g, dtype=torch.float64) + 0.5, 0.7
    counts, eq1 = torch.bincount(works), _eq1_brute(codes, works, h, t)
    # 2 places from the end of one epoch's permutation, 2 from the start of the next: 30 × 30 equally likely batches
    straddling = [a + b for a in permutations(range(6), 2) for b in permutations(range(6), 2)]
    epochs = torch.tensor([0, 0, 1, 1])
    est = lambda s, e=None: pairwise_style_loss(codes[list(s)], works[list(s)], h, counts, t, e)
    torch.testing.assert_close(torch.stack([est(s, epochs) for s in straddling]).mean(), eq1, rtol=1e-10, atol=0)
    assert abs(torch.stack([est(s) for s in straddling]).mean() - eq1) > 0.01 * eq1      # epochs ignored: biased
    for b in (3, 4):                                                                       # the first estimate: biased
        old = torch.stack([_mean_over_pairs(codes[list(s)], works[list(s)], h, t) for s in combinations(range(6), b)]).mean()
        assert abs(old - eq1) > 0.02 * eq1


def test_eq2_estimate_averages_to_eq2_over_every_minibatch():
    from itertools import combinations
    g = torch.Generator().manual_seed(4)
    works = torch.tensor([0, 0, 1, 2, 2, 2, 1])
    loss = StyleMetricLoss(torch.bincount(works), dims=3, t=0.8)
    codes = torch.randn(7, 3, generator=g, dtype=torch.float64)
    loss = loss.double()
    whole = loss(codes, works)
    mean = torch.stack([loss(codes[list(s)], works[list(s)]) for s in combinations(range(7), 3)]).mean()
    torch.testing.assert_close(mean, whole, rtol=1e-10, atol=0)


def test_vae_error_in_raw_lab_is_the_squared_error_of_raw_lab():
    import kornia
    from balstyle.stylespace.models import LAB_ERROR_WEIGHTS, ContentVAE
    rgb = torch.rand(2, 2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert LAB_ERROR_WEIGHTS["raw"] == (2500.0, 12100.0, 12100.0)
    vae = ContentVAE(2, 4, (8, 16), (1, 1), 16, 16, channel_weights=LAB_ERROR_WEIGHTS["raw"])
    raw = (kornia.color.rgb_to_lab(rgb[0]) - kornia.color.rgb_to_lab(rgb[1])).pow(2).flatten(1).sum(1)
    torch.testing.assert_close(vae.error(rgb_to_lab(rgb[0]), rgb_to_lab(rgb[1])), raw, rtol=1e-4, atol=0)
    scaled = ContentVAE(2, 4, (8, 16), (1, 1), 16, 16)
    out = scaled(torch.randn(3, 3, 16, 16), torch.randn(3, 2))
    assert set(scaled.state_dict()) == set(vae.state_dict()) and out["reconstruction"] > 0


def test_prepare_faces_keeps_faces_at_or_above_the_likelihood_threshold(tmp_path):
    from PIL import Image
    from balstyle.stylespace.data import DetectedFace, prepare_faces
    fake = lambda image: [DetectedFace((2 + 10 * k, 2, 8, 8), (4 + 10 * k, 4), (8 + 10 * k, 4), p) for k, p in enumerate((0.1, 0.5, 0.8))]
    for artist in ("a", "b"):
        (tmp_path / "src" / artist).mkdir(parents=True)
        for i in range(3): Image.new("RGB", (40, 16), "white").save(tmp_path / "src" / artist / f"{i}.png")
    kept = {p: prepare_faces(tmp_path / "src", tmp_path / f"out{p}", fake, size=8, min_works=4, min_likelihood=p) for p in (0.0, 0.5, 0.9)}
    assert {p: len(f) for p, f in kept.items()} == {0.0: 18, 0.5: 12, 0.9: 0}       # 3 images × 2 artists × faces kept
    assert sorted(kept[0.5]["likelihood"].unique()) == [0.5, 0.8]
    assert (tmp_path / "out0.9" / "faces.csv").is_file() and not any((tmp_path / "out0.9").glob("*/"))
    kept5 = prepare_faces(tmp_path / "src", tmp_path / "five", fake, size=8, min_works=5, min_likelihood=0.5)   # 6 faces each ≥ 5
    assert sorted(kept5["artist"].unique()) == ["a", "b"]
