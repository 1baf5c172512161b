"""The mathematics of paper A's losses: bounds, balance, invariances, gradients, brute force."""
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from balstyle.transfer.losses import (GRAM_NORMALISATIONS, balanced_style_loss, classic_style_loss, content_loss, gram,
                             style_loss_bounds)

settings.register_profile("balstyle", deadline=None, max_examples=60)
settings.load_profile("balstyle")


@st.composite
def feature_pairs(draw, nonneg=True):
    "Two lists of (B, C, H, W) features with the same layout, non-negative like ReLU outputs."
    b = draw(st.integers(1, 3))
    shapes = [(b, draw(st.integers(1, 6)), draw(st.integers(1, 5)), draw(st.integers(1, 5))) for _ in range(draw(st.integers(1, 3)))]
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.floats(1e-3, 1e3))
    sparsity = draw(st.floats(0, 0.9))
    g = torch.Generator().manual_seed(seed)
    def make(shape):
        x = torch.rand(shape, generator=g, dtype=torch.float64) * scale
        return x * (torch.rand(shape, generator=g, dtype=torch.float64) > sparsity)
    return [make(s) for s in shapes], [make(s) for s in shapes]


@given(feature_pairs(), st.sampled_from(GRAM_NORMALISATIONS))
def test_infimum_le_classic_le_supremum(pair, normalize):
    p, s = pair
    classic = classic_style_loss(p, s, reduction="none", normalize=normalize)
    inf, sup = style_loss_bounds(p, s, reduction="none", normalize=normalize)
    tol = 1e-5 * sup + 1e-30
    assert (inf <= classic + tol).all() and (classic <= sup + tol).all()


@given(feature_pairs())
def test_balanced_loss_lies_in_unit_interval(pair):
    p, s = pair
    bal = balanced_style_loss(p, s, reduction="none")
    assert torch.isfinite(bal).all() and (bal >= 0).all() and (bal <= 1 + 1e-6).all()


@given(feature_pairs(), st.floats(1e-2, 1e2), st.floats(1e-2, 1e2))
def test_balanced_loss_is_invariant_to_feature_scale(pair, a, b):
    "Rescaling pastiche and style features by the same factor leaves eq 13 unchanged (the classic loss scales by a⁴)."
    p, s = pair
    base = balanced_style_loss(p, s, reduction="none")
    scaled = balanced_style_loss([a * x for x in p], [a * x for x in s], reduction="none")
    torch.testing.assert_close(scaled, base, rtol=1e-6, atol=1e-9)
    classic = classic_style_loss(p, s, reduction="none")
    torch.testing.assert_close(classic_style_loss([b * x for x in p], [b * x for x in s], reduction="none"), b**4 * classic,
                               rtol=1e-6, atol=1e-12)


@given(feature_pairs())
def test_balanced_gradient_is_classic_gradient_over_detached_supremum(pair):
    p, s = pair
    p = [x.clone().requires_grad_(True) for x in p]
    _, sup = style_loss_bounds(p, s, reduction="none")
    sup = sup.detach()
    bal = balanced_style_loss(p, s, reduction="none").sum()
    g_bal = torch.autograd.grad(bal, p)
    # the same per-sample, per-layer classic terms, each scaled by the constant 1/sup
    classic = classic_style_loss(p, s, reduction="none")
    safe = torch.where(sup > 0, sup, torch.ones_like(sup))
    g_cls = torch.autograd.grad((classic / safe).sum(), p)
    for a, b in zip(g_bal, g_cls): torch.testing.assert_close(a, b)


def test_balanced_gradient_single_layer_closed_form():
    torch.manual_seed(0)
    x, s = torch.rand(1, 5, 4, 4, dtype=torch.float64, requires_grad=True), torch.rand(1, 5, 4, 4, dtype=torch.float64)
    g_bal, = torch.autograd.grad(balanced_style_loss([x], [s]), x)
    g_cls, = torch.autograd.grad(classic_style_loss([x], [s]), x)
    _, sup = style_loss_bounds([x], [s])
    torch.testing.assert_close(g_bal, g_cls / sup.item())
    g_through, = torch.autograd.grad(balanced_style_loss([x], [s], detach_supremum=False), x)
    assert not torch.allclose(g_through, g_bal), "with detach_supremum=False the denominator must carry gradient"


def brute_force(p_list, s_list, normalize="hw"):
    "Eqs 6, 11, 12, 13 written as loops over samples, layers and Gram entries."
    B, L = p_list[0].shape[0], len(p_list)
    out = {k: np.zeros((B, L)) for k in ("classic", "sup", "inf", "bal")}
    for k in range(B):
        for l in range(L):
            fp, fs = p_list[l][k].numpy().astype(np.float64), s_list[l][k].numpy().astype(np.float64)
            C, H, W = fp.shape
            n = {"hw": H * W, "chw": C * H * W, "none": 1}[normalize]
            gp, gs = np.zeros((C, C)), np.zeros((C, C))
            for i, j in itertools.product(range(C), range(C)):
                gp[i, j] = sum(fp[i, y, x] * fp[j, y, x] for y in range(H) for x in range(W)) / n
                gs[i, j] = sum(fs[i, y, x] * fs[j, y, x] for y in range(H) for x in range(W)) / n
            out["classic"][k, l] = np.mean((gp - gs) ** 2)
            out["sup"][k, l] = (np.sum(gp**2) + np.sum(gs**2)) / C**2
            out["inf"][k, l] = (np.sqrt(np.sum(gp**2)) - np.sqrt(np.sum(gs**2))) ** 2 / C**2
            out["bal"][k, l] = out["classic"][k, l] / out["sup"][k, l]
    return out


@pytest.mark.parametrize("normalize", GRAM_NORMALISATIONS)
def test_vectorised_equals_brute_force(normalize):
    g = torch.Generator().manual_seed(1)
    shapes = [(3, 4, 3, 3), (3, 6, 2, 3)]
    p = [torch.rand(s, generator=g, dtype=torch.float64) for s in shapes]
    s = [torch.rand(sh, generator=g, dtype=torch.float64) for sh in shapes]
    ref = brute_force(p, s, normalize)
    np.testing.assert_allclose(classic_style_loss(p, s, reduction="none", normalize=normalize).numpy(), ref["classic"], rtol=1e-9)
    inf, sup = style_loss_bounds(p, s, reduction="none", normalize=normalize)
    np.testing.assert_allclose(sup.numpy(), ref["sup"], rtol=1e-9)
    np.testing.assert_allclose(inf.numpy(), ref["inf"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(balanced_style_loss(p, s, reduction="none", normalize=normalize).numpy(), ref["bal"], rtol=1e-9)
    # eq 8: the batch mean of eq 7, with layer weights
    w = [0.5, 2.0]
    expected = (ref["classic"] * np.array(w)).sum(1).mean()
    np.testing.assert_allclose(classic_style_loss(p, s, weights=w, normalize=normalize).item(), expected, rtol=1e-9)


def test_content_loss_against_direct_mse():
    g = torch.Generator().manual_seed(2)
    p = {"relu3_3": torch.rand(2, 3, 4, 4, generator=g), "relu4_3": torch.rand(2, 5, 2, 2, generator=g)}
    c = {k: torch.rand(v.shape, generator=g) for k, v in p.items()}
    per = content_loss(p, c, reduction="none")
    for l, k in enumerate(p):
        for b in range(2): assert per[b, l].item() == pytest.approx(((p[k][b] - c[k][b]) ** 2).mean().item(), rel=1e-6)
    assert content_loss(p, c).item() == pytest.approx(per.sum(1).mean().item(), rel=1e-6)


def test_zero_features_give_finite_values_and_gradients():
    z = torch.zeros(2, 4, 3, 3, requires_grad=True)
    for fn in (classic_style_loss, balanced_style_loss):
        loss = fn([z], [torch.zeros(2, 4, 3, 3)])
        (grad,) = torch.autograd.grad(loss, z)
        assert loss.item() == 0 and torch.isfinite(grad).all()
    inf, sup = style_loss_bounds([z], [torch.zeros(2, 4, 3, 3)])
    assert inf.item() == 0 and sup.item() == 0
    # one side zero: the classic loss equals its supremum, so the balanced loss is exactly 1
    one = balanced_style_loss([torch.zeros(1, 3, 2, 2)], [torch.rand(1, 3, 2, 2)])
    assert one.item() == pytest.approx(1.0)


def test_losses_are_float32_under_autocast_and_for_half_inputs():
    big = torch.full((1, 4, 16, 16), 200.0, dtype=torch.float16)     # Gram entries 4e4, squared 1.6e9
    other = torch.full((1, 4, 16, 16), 50.0, dtype=torch.float16)
    loss = classic_style_loss([big], [other])
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx((200.0**2 - 50.0**2) ** 2, rel=1e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = torch.rand(2, 8, 6, 6) * 300
        assert gram(x).dtype == torch.float32
        g = gram(x)
    torch.testing.assert_close(g, x.flatten(2) @ x.flatten(2).transpose(1, 2) / 36, rtol=1e-5, atol=1e-2)


def test_style_batch_of_one_broadcasts_and_mismatches_are_named():
    p = {"relu1_2": torch.rand(4, 3, 5, 5), "relu2_2": torch.rand(4, 6, 2, 2)}
    s = {k: v[:1] for k, v in p.items()}
    expanded = {k: v.expand_as(p[k]) for k, v in s.items()}
    torch.testing.assert_close(classic_style_loss(p, s, reduction="none"), classic_style_loss(p, expanded, reduction="none"))
    with pytest.raises(KeyError, match="relu2_2"): classic_style_loss(p, {"relu1_2": s["relu1_2"]})
    with pytest.raises(ValueError, match="reduction"): classic_style_loss(p, s, reduction="median")
    with pytest.raises(ValueError, match="normalize"): gram(p["relu1_2"], "cc")
