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
