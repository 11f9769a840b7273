"""Metric functions against scikit-learn and against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, precision_recall_curve, roc_auc_score

from emerge_ehr.evaluate.metrics import (
    auprc, auroc, bootstrap, bootstrap_indices, brier, min_p_se, paired_difference,
)


def test_hand_computed_example():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.8, 0.4, 0.1])
    # Pairs (pos, neg): (0.9>0.8) (0.9>0.1) (0.4<0.8) (0.4>0.1) -> 3 of 4 correctly ordered.
    assert auroc(y, p) == pytest.approx(0.75)
    # Ranked: 1 (P=1, R=.5), 0, 1 (P=2/3, R=1) -> AP = .5*1 + .5*2/3.
    assert auprc(y, p) == pytest.approx(0.5 + 1 / 3)
    # Thresholds: min(P,R) = min(1,.5)=.5, min(.5,.5)=.5, min(2/3,1)=2/3, min(.5,1)=.5 -> 2/3.
    assert min_p_se(y, p) == pytest.approx(2 / 3)
    assert brier(y, p) == pytest.approx(np.mean([0.01, 0.64, 0.36, 0.01]))


def test_ties_count_one_half():
    assert auroc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(5))
def test_against_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    p = np.round(np.clip(0.3 * y + rng.normal(0.4, 0.25, 300), 0, 1), 2)  # rounding makes ties
    assert auroc(y, p) == pytest.approx(roc_auc_score(y, p))
    assert auprc(y, p) == pytest.approx(average_precision_score(y, p))
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p))
    precision, recall, _ = precision_recall_curve(y, p)
    assert min_p_se(y, p) == pytest.approx(np.max(np.minimum(precision, recall)[:-1]))


def test_single_class_gives_nan():
    assert np.isnan(auroc(np.zeros(5), np.linspace(0, 1, 5)))
    assert np.isnan(auprc(np.zeros(5), np.linspace(0, 1, 5)))


def test_bootstrap_interval_contains_the_point_and_averages_seeds():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p1 = np.clip(0.3 * y + rng.normal(0.4, 0.2, 200), 0, 1)
    p2 = np.clip(0.3 * y + rng.normal(0.4, 0.2, 200), 0, 1)
    result = bootstrap(y, [p1, p2], bootstrap_indices(len(y), 200, seed=0))
    m = result["auroc"]
    assert m["value"] == pytest.approx((auroc(y, p1) + auroc(y, p2)) / 2)
    assert m["ci_low"] < m["value"] < m["ci_high"]
    assert 0 < m["bootstrap_std"] < 0.1
    assert m["resamples"] == 200


def test_expected_calibration_error_by_hand():
    from emerge_ehr.evaluate.metrics import ece

    # Bin [0.1, 0.2): p 0.1, 0.1 vs y 0, 1 -> |0.2 - 1| = 0.8; bin [0.9, 1.0]: p 0.9, 0.9 vs y 1, 1 -> 0.2.
    assert ece(np.array([0, 1, 1, 1]), np.array([0.1, 0.1, 0.9, 0.9])) == pytest.approx((0.8 + 0.2) / 4)
    assert ece(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_paired_difference_is_zero_for_the_same_model_and_positive_for_a_better_one():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300).astype(float)
    noisy = [np.clip(y * 0.2 + rng.random(300) * 0.8, 0, 1) for _ in range(2)]
    sharp = [np.clip(y * 0.6 + rng.random(300) * 0.4, 0, 1) for _ in range(2)]
    indices = bootstrap_indices(len(y), 200, seed=0)
    same = paired_difference(y, noisy, noisy, indices)
    assert same["auprc"] == {"difference": 0.0, "ci_low": 0.0, "ci_high": 0.0, "std": 0.0, "resamples": 200}
    better = paired_difference(y, sharp, noisy, indices)
    expected = np.mean([auprc(y, p) for p in sharp]) - np.mean([auprc(y, p) for p in noisy])
    assert better["auprc"]["difference"] == pytest.approx(expected)
    assert 0 < better["auprc"]["ci_low"] < expected < better["auprc"]["ci_high"]
    assert better["auroc"]["ci_low"] > 0
