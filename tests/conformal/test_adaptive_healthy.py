"""AT's and COAT's inner band with healthy units (empty ground truth) in calibration and test.

The inner shift is the CRC rule on the loss of docs/guarantees.md, over every calibration unit:
``L_in = min(1, |C \\ Y| / |Y|)`` if ``|Y| > 0``, else ``1[C non-empty]``, with
``C = {p >= max(0, tau_hat(X) + u)}``. The loss is in [0, 1] and non-increasing in ``u`` for a
fixed predictor, so ``E[L_in] <= alpha`` over a mix of lesion and healthy scans. Each trial
draws fresh i.i.d. units; the statistical tests allow 3 standard errors (false alarm ~0.1%).
"""

import numpy as np
import pytest
from test_crc_healthy import healthy_aware_inner_loss

from napari_consign.conformal import SegmentationSet
from napari_consign.conformal.adaptive import AT, COAT
from napari_consign.conformal.threshold_predictor import PredictorConfig
from napari_consign.synthetic import lesion_cases

ALPHA, HEALTHY = 0.1, 0.3
TRIALS, N_CAL, N_TEST = 200, 40, 40


def _set(n: int, seed: int, empty_fraction: float = HEALTHY) -> SegmentationSet:
    d = lesion_cases(n, size=24, n_samples=2, seed=seed, empty_fraction=empty_fraction)
    return SegmentationSet.from_samples(d["samples"], d["masks"], d["images"])


@pytest.fixture(scope="module")
def coat() -> COAT:
    method = COAT(config=PredictorConfig(epochs=10, seed=0, input_size=24))
    method.train(_set(60, seed=11, empty_fraction=0.0))
    return method


def test_healthy_units_enter_the_inner_calibration_only(coat):
    cal = _set(80, seed=12)
    lesion = cal.masks.reshape(len(cal), -1).any(axis=1)
    coat.fit_shifts(cal)
    with_healthy = coat.shifts(ALPHA)
    assert (coat.n_used, coat.n_empty) == (lesion.sum(), (~lesion).sum())
    coat.fit_shifts(cal.subset(np.flatnonzero(lesion)))
    lesion_only = coat.shifts(ALPHA)
    # the outer band's calibration ignores healthy units; the inner band's counts them, and a
    # healthy unit can only add loss, so its shift can only move up (a smaller inner band)
    assert with_healthy.outer == lesion_only.outer
    assert with_healthy.inner >= lesion_only.inner


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["coat", "at"])
def test_inner_guarantee_over_lesion_and_healthy_scans(objective):
    cls = COAT if objective == "coat" else AT
    method = cls(config=PredictorConfig(objective=objective, epochs=10, seed=0, input_size=24))
    method.train(_set(60, seed=13, empty_fraction=0.0))
    pool = _set(TRIALS * (N_CAL + N_TEST), seed=14)
    losses, healthy_empty = [], []
    for t in range(TRIALS):
        idx = np.arange(t * (N_CAL + N_TEST), (t + 1) * (N_CAL + N_TEST))
        cal, test = pool.subset(idx[:N_CAL]), pool.subset(idx[N_CAL:])
        method.fit_shifts(cal)
        inner = [i for i, _ in method.predict_masks(test, ALPHA)]
        losses.append(
            np.mean(
                [healthy_aware_inner_loss(c, y) for c, y in zip(inner, test.masks, strict=True)]
            )
        )
        empty = [not c.any() for c, y in zip(inner, test.masks, strict=True) if not y.any()]
        healthy_empty.append(np.mean(empty) if empty else np.nan)
    x = np.asarray(losses)
    assert x.mean() <= ALPHA + 3 * x.std(ddof=1) / np.sqrt(x.size), x.mean()
    # each non-empty healthy inner band costs a whole unit of loss: with 30% healthy units at
    # most a third of them can have one on average
    h = np.asarray(healthy_empty)
    h = h[np.isfinite(h)]
    assert h.mean() >= 1 - ALPHA / HEALTHY - 3 * h.std(ddof=1) / np.sqrt(h.size), h.mean()
