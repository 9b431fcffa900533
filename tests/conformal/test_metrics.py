import numpy as np
import pytest

from napari_consign.conformal.metrics import (
    band_sizes,
    coverage_gap,
    inner_loss,
    marginal_coverage,
    tpr,
)


def test_coverage_gap_oracle():
    # docs/methods.md §9.7: two all-positive 1-pixel units predicted {0, 1}, target 0.5.
    t = [tpr(np.array([False]), np.array([1])), tpr(np.array([True]), np.array([1]))]
    assert marginal_coverage(t) == 0.5
    assert coverage_gap(t, alpha=0.5) == 0.5


def test_gap_is_mean_absolute_deviation_not_deviation_of_mean():
    assert coverage_gap([0.8, 1.0], alpha=0.1) == pytest.approx(0.1)
    assert marginal_coverage([0.8, 1.0]) == pytest.approx(0.9)


def test_empty_truth_is_nan_and_skipped():
    assert np.isnan(tpr(np.ones(3, bool), np.zeros(3)))
    assert np.isnan(inner_loss(np.ones(3, bool), np.zeros(3)))
    assert marginal_coverage([float("nan"), 0.5]) == 0.5


def test_inner_loss_is_capped():
    truth = np.array([1, 0, 0, 0])
    assert inner_loss(np.array([True, True, False, False]), truth) == 1.0
    assert inner_loss(np.array([True, True, True, True]), truth) == 1.0
    assert inner_loss(np.array([True, False, False, False]), truth) == 0.0


def test_band_sizes_with_spacing():
    inner = np.zeros((2, 3, 4), bool)
    outer = np.ones((2, 3, 4), bool)
    inner[0, 0, :2] = True
    sizes = band_sizes(inner, outer, spacing=(2.0, 1.0, 0.5))
    assert sizes["outer_voxels"] == 24 and sizes["inner_voxels"] == 2
    assert sizes["ring_voxels"] == 22
    assert sizes["outer_mm3"] == 24.0 and sizes["outer_ml"] == pytest.approx(0.024)
    assert "outer_mm3" not in band_sizes(inner, outer)
