"""CRC's inner band with healthy units (empty ground truth) in calibration and test.

Loss (docs/guarantees.md): ``L_in = min(1, |C \\ Y| / |Y|)`` if ``|Y| > 0``, else
``1[C non-empty]``; in [0, 1] and non-increasing in the threshold, so CRC's theorem gives
``E[L_in] <= alpha`` over a mix of lesion and healthy scans, and (continuous scores, no shared
jumps) ``E[L_in] >= alpha - 2/(n+1)``. Each trial draws fresh i.i.d. units, so trial means are
i.i.d.; the statistical tests allow 3 standard errors (one-sided false alarm about 0.1%).
"""

import itertools

import numpy as np
import pytest

from napari_consign.conformal import CRC
from napari_consign.conformal.metrics import inner_loss
from napari_consign.synthetic import lesion_cases

ALPHA = 0.1
TRIALS, N_CAL, N_TEST = 400, 60, 60


def healthy_aware_inner_loss(inner: np.ndarray, truth: np.ndarray) -> float:
    """The loss of the docs, written independently of the library's curve."""
    if not truth.any():
        return float(inner.any())
    return inner_loss(inner, truth)


def brute_force_inner_threshold(scores, masks, alpha):
    """Smallest candidate threshold whose CRC-adjusted empirical inner risk meets alpha."""
    n = len(scores)
    candidates = np.unique(np.concatenate([s.ravel() for s in scores]))
    candidates = np.concatenate([[0.0], np.nextafter(candidates, np.inf)])
    for t in np.sort(candidates):
        risk = np.mean(
            [healthy_aware_inner_loss(s >= t, m) for s, m in zip(scores, masks, strict=True)]
        )
        if n / (n + 1) * risk + 1 / (n + 1) <= alpha + 1e-12:
            return t
    return np.inf


def test_inner_threshold_matches_brute_force_with_healthy_units():
    rng = np.random.default_rng(4)
    scores = rng.uniform(size=(30, 5, 5))
    masks = scores + 0.3 * rng.standard_normal(scores.shape) > 0.8
    masks[::3] = False  # every third unit is healthy
    crc = CRC().fit(scores, masks.astype(np.uint8))
    assert crc.n_empty == 10
    for alpha in (0.2, 0.35, 0.5):
        assert crc.raw_inner_threshold(alpha) == pytest.approx(
            brute_force_inner_threshold(scores, masks, alpha)
        )


def test_healthy_loss_is_monotone_in_the_threshold():
    rng = np.random.default_rng(1)
    score = rng.uniform(size=(8, 8))
    empty = np.zeros((8, 8), bool)
    losses = [healthy_aware_inner_loss(score >= t, empty) for t in np.linspace(0, 1.01, 50)]
    assert all(a >= b for a, b in itertools.pairwise(losses))
    assert losses[0] == 1.0 and losses[-1] == 0.0


def test_only_healthy_units_still_refused():
    with pytest.raises(Exception, match="empty"):
        CRC().fit(np.full((4, 3, 3), 0.5), np.zeros((4, 3, 3), np.uint8))


@pytest.fixture(scope="module")
def trials():
    d = lesion_cases(TRIALS * (N_CAL + N_TEST), size=20, n_samples=2, seed=77, empty_fraction=0.3)
    scores = d["samples"].mean(axis=1)
    masks = d["masks"].astype(bool)
    per = N_CAL + N_TEST
    out = {"inner": [], "inner_raw": [], "healthy_empty": []}
    for t in range(TRIALS):
        s, m = scores[t * per : (t + 1) * per], masks[t * per : (t + 1) * per]
        crc = CRC().fit(s[:N_CAL], m[:N_CAL])
        th, raw = crc.thresholds(ALPHA).inner, crc.raw_inner_threshold(ALPHA)
        test = list(zip(s[N_CAL:], m[N_CAL:], strict=True))
        out["inner"].append(np.mean([healthy_aware_inner_loss(x >= th, y) for x, y in test]))
        out["inner_raw"].append(np.mean([healthy_aware_inner_loss(x >= raw, y) for x, y in test]))
        healthy = [not (x >= th).any() for x, y in test if not y.any()]
        out["healthy_empty"].append(np.mean(healthy) if healthy else np.nan)
    return {k: np.asarray(v) for k, v in out.items()}


def _mean_and_se(x):
    x = x[np.isfinite(x)]
    return x.mean(), x.std(ddof=1) / np.sqrt(x.size)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["inner", "inner_raw"])
def test_mean_inner_loss_with_healthy_scans_at_most_alpha(trials, loss):
    mean, se = _mean_and_se(trials[loss])
    assert mean <= ALPHA + 3 * se, (mean, se)


@pytest.mark.slow
def test_inner_guarantee_with_healthy_scans_is_tight(trials):
    mean, se = _mean_and_se(trials["inner_raw"])
    assert mean >= ALPHA - 2 / (N_CAL + 1) - 3 * se, (mean, se)


@pytest.mark.slow
def test_most_healthy_scans_get_an_empty_inner_band(trials):
    # 30% of units are healthy and each non-empty healthy inner band costs a full unit of
    # loss, so at alpha 0.1 at most a third of healthy scans can have one, on average
    mean, se = _mean_and_se(trials["healthy_empty"])
    assert mean >= 1 - ALPHA / 0.3 - 3 * se, (mean, se)
