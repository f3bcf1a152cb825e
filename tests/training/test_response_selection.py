"""Response selection's groups, R10@1 with ties, and the conditional logit that fits a scorer to it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.response_selection import (
    CHOICES,
    comparison_groups,
    fit_conditional_logit,
    r10_at_1,
    shrinkage_by_cross_validation,
)


def test_each_group_is_the_item_then_nine_distinct_others() -> None:
    groups = comparison_groups(37)
    assert len(groups) == 37
    for index, group in enumerate(groups):
        assert group[0] == index and len(set(group)) == CHOICES == len(group)


def test_r10_at_1_splits_ties() -> None:
    assert r10_at_1([[3, 1, 2], [1, 2, 0], [2, 2, 2, 2]]) == pytest.approx((1 + 0 + 0.25) / 3, abs=1e-4)


def _synthetic(groups: int, weights: np.ndarray, seed: int) -> np.ndarray:
    """Groups whose first item is drawn as the softmax of features @ weights would choose it."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(groups, CHOICES, len(weights)))
    scores = features @ weights
    chosen = [rng.choice(CHOICES, p=np.exp(s - s.max()) / np.exp(s - s.max()).sum()) for s in scores]
    for group, item in enumerate(chosen):  # the chosen item goes first, as the real reply does
        features[group, [0, item]] = features[group, [item, 0]]
    return features


def test_the_logit_recovers_the_weights_that_made_the_choices() -> None:
    truth = np.array([2.0, -1.0, 0.0])
    fitted = fit_conditional_logit(_synthetic(4000, truth, seed=1))
    assert fitted == pytest.approx(truth, abs=0.15)


def test_a_feature_constant_up_to_rounding_gets_no_weight() -> None:
    truth = np.array([2.0, -1.0])
    features = _synthetic(2000, truth, seed=4)
    rounding = 0.3 + 1e-17 * np.random.default_rng(5).normal(size=(*features.shape[:2], 1))
    fitted = fit_conditional_logit(np.concatenate([features, rounding], axis=2))
    assert abs(fitted[2]) < 1.0  # standardised, its noise would have weighed about 1e16
    assert fitted[:2] == pytest.approx(fit_conditional_logit(features), abs=1e-3)


def test_a_lower_bound_holds_in_the_original_units() -> None:
    features = _synthetic(2000, np.array([-1.0, 1.0]), seed=2) * np.array([10.0, 1.0])  # unequal scales
    free = fit_conditional_logit(features)
    bounded = fit_conditional_logit(features, lower_bounds=[0.05, None])
    assert free[0] < 0 and bounded[0] == pytest.approx(0.05, abs=1e-6) and bounded[1] > 0


def test_an_offset_enters_with_weight_one_and_only_the_rest_is_fitted() -> None:
    truth = np.array([2.0, -1.0, 1.5])
    features = _synthetic(4000, truth, seed=3)
    offset = features[:, :, 2] * 1.5  # the third feature's part of the score, already known
    fitted = fit_conditional_logit(features[:, :, :2], offset=offset)
    assert fitted == pytest.approx(truth[:2], abs=0.15)


def test_shrinkage_leaves_out_features_that_add_nothing_to_the_offset() -> None:
    known = np.array([2.0])
    rng = np.random.default_rng(4)
    offset = _synthetic(150, known, seed=4)[:, :, 0] * 2.0  # the real item first, chosen by the offset
    noise = rng.normal(size=(150, CHOICES, 2))  # unrelated to which item is first
    penalty, measured = shrinkage_by_cross_validation(noise, offset, (1e-3, 1e-2, 1.0, math.inf))
    assert math.isinf(penalty)
    assert set(measured) == {"0.001", "0.01", "1", "inf"}


def test_shrinkage_keeps_a_feature_that_adds_to_the_offset() -> None:
    truth = np.array([1.0, 2.0])
    features = _synthetic(400, truth, seed=5)
    offset = features[:, :, 0]  # the first feature is known; the second carries as much again
    penalty, measured = shrinkage_by_cross_validation(features[:, :, 1:], offset, (1e-3, 1e-2, 1.0, math.inf))
    assert not math.isinf(penalty) and measured[f"{penalty:g}"] > measured["inf"] + 0.1
    assert fit_conditional_logit(features[:, :, 1:], l2=penalty, offset=offset)[0] > 1.0


def test_shrinkage_needs_groups_to_cross_validate_and_the_offset_alone_to_fall_back_on() -> None:
    features = _synthetic(20, np.array([1.0]), seed=6)
    with pytest.raises(ValueError, match="at least 2 groups"):
        shrinkage_by_cross_validation(features[:1], features[:1, :, 0], (1e-3, math.inf))
    with pytest.raises(ValueError, match=r"math\.inf"):
        shrinkage_by_cross_validation(features, features[:, :, 0], (1e-3, 1e-2))
