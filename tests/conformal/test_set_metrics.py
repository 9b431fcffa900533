"""Beta-equality score, sEC, Chao1 and mean Pearson correlation (docs/methods.md §5.2, 7)."""

import numpy as np
import pytest

from napari_consign.conformal import ConformalInputError
from napari_consign.conformal.set_metrics import (
    beta_equal,
    beta_scores,
    chao1,
    check_beta,
    mean_pearson,
    sampled_coverage,
    uncertain_pixels,
)


def test_beta_score_is_macro_recall_over_truth_labels():
    truth = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 0, 2, 2, 2, 2])
    # recall: background 3/4, label 1 1/2, label 2 4/4; label 3 (absent) is ignored
    assert beta_scores(truth, pred) == pytest.approx((0.75 + 0.5 + 1.0) / 3)
    stack = np.stack([pred, truth, np.zeros_like(truth)])
    np.testing.assert_allclose(beta_scores(truth, stack), [(0.75 + 0.5 + 1) / 3, 1.0, 1 / 3])


def test_beta_equality_is_strict_even_with_rounding():
    # 9 of 10 foreground pixels and all background: score (1 + 0.9) / 2 = 0.95 exactly
    truth = np.array([0] * 10 + [1] * 10)
    pred = truth.copy()
    pred[-1] = 0
    score = beta_scores(truth, pred)
    assert not beta_equal(score, 0.95)
    assert beta_equal(score, 0.9499)


def test_sec_counts_units_with_one_matching_sample():
    truths = [np.array([0, 1, 1]), np.array([0, 1, 1])]
    samples = [np.array([[0, 0, 0], [0, 1, 1]]), np.array([[1, 0, 0], [0, 0, 0]])]
    assert sampled_coverage(truths, samples, beta=0.9) == 0.5


def test_chao1_by_hand():
    a, b, c, d = [0, 0], [0, 1], [1, 0], [1, 1]
    samples = np.array([a, a, a, b, b, c, d])  # counts 3, 2, 1, 1: S=4, f1=2, f2=1
    assert chao1(samples) == 4 + 2 * 1 / (2 * 2)
    assert chao1(np.zeros((5, 3, 3), np.uint8)) == 1.0  # no uncertain pixel


def test_chao1_uses_only_uncertain_pixels():
    rng = np.random.default_rng(0)
    samples = np.zeros((6, 4, 4), np.uint8)
    samples[:, 0, 0] = [0, 1, 0, 1, 0, 1]
    np.testing.assert_array_equal(uncertain_pixels(samples), samples.std(axis=0) > 0)
    noisy = samples.copy()
    noisy[:, 3, 3] = rng.integers(0, 2, 6)
    keep = uncertain_pixels(samples)
    assert chao1(noisy, keep) == chao1(samples) == 2 + 0 / (2 * (0 + 1))


def test_mean_pearson_by_hand():
    x = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [1, 0, 0, 1]])
    # rows 1,2 identical (r = 1), row 3 is their negation (r = -1): 9 entries sum to 5 - 4 = 1
    assert mean_pearson(x, np.ones(4, bool)) == pytest.approx(1 / 9)
    constant = np.array([[0, 0], [0, 1], [0, 1]])  # first row constant: NaN -> 0
    assert mean_pearson(constant, np.ones(2, bool)) == pytest.approx((0 + 4) / 9)
    assert mean_pearson(np.zeros((3, 2, 2))) == 1.0
    assert np.isnan(mean_pearson(np.tile([[0, 1]], (1001, 1))))


def test_beta_is_validated():
    for bad in (0, 1, -0.1, 1.5, "x"):
        with pytest.raises(ConformalInputError, match="beta"):
            check_beta(bad)
    with pytest.raises(ConformalInputError):
        beta_scores(np.zeros(4), np.zeros((2, 5)))
