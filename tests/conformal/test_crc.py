"""CRC: hand-computed cases, the MAPIE oracle, and bad input."""

import numpy as np
import pytest

from napari_consign.conformal import CRC, ConformalInputError, InfeasibleAlphaError
from napari_consign.conformal.grid_reference import grid_outer_threshold


def _units(gt_scores, bg_scores, n):
    score = np.array([*gt_scores, *bg_scores])
    mask = np.array([1] * len(gt_scores) + [0] * len(bg_scores))
    return [score] * n, [mask] * n


def test_outer_threshold_by_hand():
    # 3 identical units, GT scores 0.1..0.4, alpha 0.5: r* = (4 * 0.5 - 1) / 3 = 1/3.
    # W_<(0.2) = 0.25 <= 1/3 < W_<(0.3) = 0.5, so tau_out = 0.2.
    scores, masks = _units([0.1, 0.2, 0.3, 0.4], [0.05], 3)
    assert CRC().fit(scores, masks).outer_threshold(0.5) == 0.2


def test_outer_threshold_covers_everything_when_r_star_is_zero():
    scores, masks = _units([0.1, 0.2, 0.3, 0.4], [0.05], 1)
    assert CRC().fit(scores, masks).outer_threshold(0.5) == 0.1


def test_inner_threshold_by_hand():
    # GT (0.9, 0.8), background (0.7, 0.6, 0.1); alpha 0.5, r* = 1/3.
    # tau in (0.6, 0.7]: one FP -> loss 1/2 > 1/3; tau > 0.7: loss 0. Infimum 0.7, not attained.
    scores, masks = _units([0.9, 0.8], [0.7, 0.6, 0.1], 3)
    crc = CRC().fit(scores, masks)
    assert crc.raw_inner_threshold(0.5) == np.nextafter(0.7, 1.0)
    assert crc.outer_threshold(0.5) == 0.8  # W_<(0.9) = 1/2 > 1/3
    t = crc.thresholds(0.5)
    assert t.inner == 0.8 and t.outer == 0.8  # nested: inner raised to tau_out


def test_inner_threshold_zero_when_everything_is_allowed():
    # One background voxel against four GT voxels: the full set's loss is 1/4 <= r* = 1/3.
    scores, masks = _units([0.9, 0.8, 0.7, 0.6], [0.65], 3)
    assert CRC().fit(scores, masks).raw_inner_threshold(0.5) == 0.0


def test_inner_cap_uses_only_top_background_scores():
    # Unit with |Y| = 1 and many background voxels: loss is min(1, FP) for any tau <= top bg.
    score = np.array([0.95, 0.9, 0.5, 0.4, 0.3, 0.2])
    mask = np.array([1, 0, 0, 0, 0, 0])
    crc = CRC().fit([score] * 4, [mask] * 4)
    # alpha 0.9: r* = (5 * 0.9 - 1) / 4 = 0.875 < 1, so the top background voxel must go.
    assert crc.raw_inner_threshold(0.9) == np.nextafter(0.9, 1.0)


def test_empty_masks_are_excluded_from_the_outer_band_and_counted():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(12, 4, 4))
    masks = (scores > 0.5).astype(np.uint8)
    masks[[2, 5]] = 0
    crc = CRC().fit(scores, masks)
    assert (crc.n_used, crc.n_empty) == (10, 2)
    ref = CRC().fit(np.delete(scores, [2, 5], 0), np.delete(masks, [2, 5], 0))
    assert crc.outer_threshold(0.2) == ref.outer_threshold(0.2)
    # the inner band counts the healthy units (tests/conformal/test_crc_healthy.py)
    assert crc.raw_inner_threshold(0.2) >= ref.raw_inner_threshold(0.2)


@pytest.mark.parametrize(
    ("scores", "masks", "message"),
    [
        (np.full((3, 4), 0.5), np.ones((3, 5)), "shape"),
        (np.full((3, 4), 1.5), np.ones((3, 4)), r"outside \[0, 1\]"),
        (np.full((3, 4), np.nan), np.ones((3, 4)), "NaN"),
        (np.full((3, 4), 0.5), np.zeros((3, 4)), "empty"),
        (np.full((3, 4), 0.5), np.ones((2, 4)), "3 probability maps but 2"),
        (np.full((3, 4), 0.5), np.full((3, 4), 0.5), "integer"),
    ],
)
def test_bad_input(scores, masks, message):
    with pytest.raises(ConformalInputError, match=message):
        CRC().fit(scores, masks)


def test_alpha_too_small_for_calibration_size():
    rng = np.random.default_rng(1)
    crc = CRC().fit(rng.uniform(size=(10, 5)), np.ones((10, 5)))
    crc.thresholds(0.1)  # n = 10 >= 9
    with pytest.raises(InfeasibleAlphaError, match="at least 19"):
        crc.thresholds(0.05)


def test_any_dimension():
    rng = np.random.default_rng(2)
    vols = rng.uniform(size=(15, 4, 5, 6))
    masks = vols > 0.6
    crc = CRC().fit(list(vols), list(masks))
    inner, outer = crc.predict(vols[0], 0.2)
    assert inner.shape == outer.shape == (4, 5, 6)
    assert not np.any(inner & ~outer)


def _mapie_data(seed):
    rng = np.random.default_rng(seed)
    probs = rng.beta(2, 2, size=(60, 8, 8))
    labels = (probs + rng.normal(0, 0.25, probs.shape) > 0.5).astype(int)
    labels[:, 0, 0] = 1  # MAPIE raises on empty masks
    return probs, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_mapie(seed):
    mapie = pytest.importorskip("mapie.risk_control")
    probs, labels = _mapie_data(seed)
    alpha, grid = 0.1, np.arange(0, 1, 0.01)
    controller = mapie.SemanticSegmentationController(
        predict_function=lambda x: x[:, None],
        risk="recall",
        method="crc",
        target_level=1 - alpha,
        predict_params=grid,
    )
    controller.calibrate(probs, labels[:, None])
    lam_mapie = float(np.ravel(controller.best_predict_param)[0])
    # A grid loop with strict '>' reproduces MAPIE exactly ...
    assert grid_outer_threshold(probs, labels, alpha, grid) == pytest.approx(lam_mapie)
    # ... and the exact threshold lies in (lam_M, lam_M + step] (docs/methods.md §2.2).
    tau = CRC().fit(probs, labels).outer_threshold(alpha)
    assert lam_mapie < tau <= lam_mapie + 0.01 + 1e-12
    # Same per-image risks: 1 - recall with p > lam at MAPIE's answer.
    recall = ((probs > lam_mapie) & (labels == 1)).sum((1, 2)) / (labels == 1).sum((1, 2))
    assert np.allclose(
        np.ravel(controller._risks[:, np.argmin(np.abs(grid - lam_mapie))]), 1 - recall
    )
