"""The ground-truth statistics of balstyle.stylespace.analysis: folds and permutations by artist, the whole-code R², its null."""
import numpy as np
import pandas as pd
import pytest
import torch

from balstyle.stylespace.analysis import (encode_factor, fold_maps, grid_effects, group_folds, hue_gap, knn_map, out_of_fold,
                                          permute_groups, pooled_r2, ridge_map, tracked_factors)


def clustered(rng, artists=16, works=5, dims=6):
    "Codes that separate the artists along random directions, and an artist-level factor the codes do not carry."
    groups = np.repeat(np.arange(artists), works)
    codes = rng.normal(size=(artists, dims))[groups] + 0.3 * rng.normal(size=(len(groups), dims))
    factor = rng.normal(size=artists)[groups] + 0.05 * rng.normal(size=len(groups))
    return codes, pd.DataFrame({"eye_size": factor}), groups


def test_artist_null_keeps_its_false_positive_rate():
    "Under the null (a factor the code lacks), 'above chance' by artist happens about 5% of the time; by image far more often."
    rng, trials = np.random.default_rng(0), 200
    by_artist, by_image = [], []
    for t in range(trials):
        codes, factor, groups = clustered(rng)
        by_artist.append(tracked_factors(codes, factor, groups, permutations=99, seed=t)["above_chance"].iloc[0])
        by_image.append(tracked_factors(codes, factor, np.arange(len(groups)), permutations=99, seed=t)["above_chance"].iloc[0])
    assert 0.01 <= np.mean(by_artist) <= 0.10          # binomial(200, 0.05): 95% within 0.02-0.08
    assert np.mean(by_image) >= 0.3                     # the image-level null is fooled by the artists' clusters


def test_artist_null_finds_a_tracked_factor():
    "A factor the code carries (one noisy dimension) is above chance, with p at its floor 1/(1 + permutations)."
    codes, _, groups = clustered(np.random.default_rng(1))
    factor = pd.DataFrame({"line_weight": codes[:, 2] + 0.2 * np.random.default_rng(2).normal(size=len(codes))})
    row = tracked_factors(codes, factor, groups, permutations=199).loc["line_weight"]
    assert row["above_chance"] and row["r2"] > 0.8 and row["p"] == pytest.approx(1 / 200)


def test_group_folds_follow_groupkfold_rule():
    "Largest group first, each to the fold with the fewest samples: sizes 5, 4, 3, 3, 1 into two folds give 8 and 8."
    groups = np.repeat(["a", "b", "c", "d", "e"], [5, 4, 3, 3, 1])
    folds = group_folds(groups, 2)
    assert {g: int(folds[groups == g][0]) for g in "abcde"} == {"a": 0, "b": 1, "c": 1, "d": 0, "e": 1}
    assert np.bincount(folds).tolist() == [8, 8]
    with pytest.raises(ValueError, match="cannot fill"):
        group_folds(groups, 6)


def test_permute_groups_swaps_only_groups_of_one_size():
    groups = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4])
    rng = np.random.default_rng(0)
    for _ in range(50):
        index = permute_groups(groups, rng)
        assert sorted(index) == list(range(len(groups)))
        for g in range(5):
            taken = groups[index[groups == g]]
            assert len(set(taken)) == 1 and (groups == taken[0]).sum() == (groups == g).sum()
        assert index[-1] == 10                       # the only group of one stays


def test_circular_r2_does_not_depend_on_the_hue_origin():
    "The (cos, sin) target rotates with the hue's zero, and a linear map's pooled R² is invariant to that rotation."
    rng = np.random.default_rng(3)
    hue = rng.uniform(size=120)
    codes = np.column_stack([np.cos(2 * np.pi * hue), np.sin(2 * np.pi * hue), rng.normal(size=(120, 2))]) + 0.4 * rng.normal(size=(120, 4))
    maps = fold_maps(codes, group_folds(np.arange(120), 4))
    r2 = [pooled_r2(y, out_of_fold(maps, y)) for y in (encode_factor(hue, "circular"), encode_factor((hue + 0.37) % 1, "circular"))]
    assert r2[0] == pytest.approx(r2[1], abs=1e-9) and 0.3 < r2[0] < 1


def test_maps_are_linear_in_the_targets():
    "Ridge and k-NN predictions are linear in the training targets, which is what lets one fit serve every permutation."
    rng = np.random.default_rng(4)
    x, t, a, b = rng.normal(size=(40, 3)), rng.normal(size=(10, 3)), rng.normal(size=(40, 2)), rng.normal(size=(40, 2))
    for predict in (ridge_map(x, t, alpha=0.5), knn_map(x, t, k=3)):
        assert np.allclose(predict(2 * a - b), 2 * predict(a) - predict(b))
        assert np.allclose(predict(np.stack([a, b], -1).reshape(40, -1)).reshape(10, 2, 2)[..., 1], predict(b))


def test_grid_effects_ignore_a_constant_and_add_up():
    rng = np.random.default_rng(5)
    codes = rng.normal(size=(3, 4, 2))
    effects, shifted = grid_effects(codes), grid_effects(codes + 7.0)
    assert effects == pytest.approx(shifted)
    assert effects["style share"] + effects["content share"] + effects["interaction share"] == pytest.approx(1.0)


def test_hue_gap_is_symmetric_and_wraps():
    a, b = torch.tensor([[1.0, 0.2], [-0.5, -0.5]]), torch.tensor([[0.3, -1.0], [0.2, 1.0]])
    assert torch.allclose(hue_gap(a, b), hue_gap(b, a))
    assert bool((hue_gap(a, b) <= 180).all())
