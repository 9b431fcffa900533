"""COAT's and AT's guarantee over many random calibration/test draws (METHODS.md 3.3, 4.4,
oracle test 3).

f_D is trained once on independent units and then fixed: validity needs only that f_D never
saw the calibration units. Each trial draws fresh i.i.d. calibration and test units; theory
(CRC on the shifted family) gives alpha - 2/(n+1) <= E[loss] <= alpha, and the test allows 3
standard errors of Monte-Carlo noise over the trials.
"""

import numpy as np
import pytest

from napari_consign.conformal import SegmentationSet
from napari_consign.conformal.adaptive import AT, COAT
from napari_consign.conformal.metrics import fnr, inner_loss
from napari_consign.conformal.threshold_predictor import PredictorConfig
from napari_consign.synthetic import lesion_cases

TRIALS, N_CAL, N_TEST, ALPHA = 300, 40, 40, 0.1


def _set(n, seed):
    d = lesion_cases(n, size=24, n_samples=2, seed=seed)
    return SegmentationSet.from_samples(d["samples"], d["masks"], d["images"])


@pytest.fixture(scope="module")
def trial_losses():
    coat = COAT(config=PredictorConfig(epochs=10, seed=0))
    coat.train(_set(60, seed=999))
    pool = _set(TRIALS * (N_CAL + N_TEST), seed=1000)
    out = {"fnr": [], "inner": []}
    for t in range(TRIALS):
        idx = np.arange(t * (N_CAL + N_TEST), (t + 1) * (N_CAL + N_TEST))
        cal, test = pool.subset(idx[:N_CAL]), pool.subset(idx[N_CAL:])
        coat.fit_shifts(cal)
        rows = [
            (fnr(o, y), inner_loss(i, y))
            for (i, o), y in zip(coat.predict_masks(test, ALPHA), test.masks, strict=True)
        ]
        out["fnr"].append(np.mean([r[0] for r in rows]))
        out["inner"].append(np.mean([r[1] for r in rows]))
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("loss", ["fnr", "inner"])
def test_mean_loss_at_most_alpha(trial_losses, loss):
    x = trial_losses[loss]
    assert x.mean() <= ALPHA + 3 * x.std(ddof=1) / np.sqrt(x.size), x.mean()


def test_outer_band_is_tight(trial_losses):
    x = trial_losses["fnr"]
    assert x.mean() >= ALPHA - 2 / (N_CAL + 1) - 3 * x.std(ddof=1) / np.sqrt(x.size), x.mean()


# AT: the same check, kept fast (a small input size, fewer units per draw): ~10 s on one core.
AT_TRIALS, AT_CAL, AT_TEST = 200, 30, 30


@pytest.fixture(scope="module")
def at_trial_losses():
    at = AT(config=PredictorConfig(objective="at", epochs=10, seed=0, input_size=24))
    at.train(_set(60, seed=998))
    pool = _set(AT_TRIALS * (AT_CAL + AT_TEST), seed=2000)
    out = {"fnr": [], "inner": []}
    for t in range(AT_TRIALS):
        idx = np.arange(t * (AT_CAL + AT_TEST), (t + 1) * (AT_CAL + AT_TEST))
        cal, test = pool.subset(idx[:AT_CAL]), pool.subset(idx[AT_CAL:])
        at.fit_shifts(cal)
        rows = [
            (fnr(o, y), inner_loss(i, y))
            for (i, o), y in zip(at.predict_masks(test, ALPHA), test.masks, strict=True)
        ]
        out["fnr"].append(np.mean([r[0] for r in rows]))
        out["inner"].append(np.mean([r[1] for r in rows]))
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("loss", ["fnr", "inner"])
def test_at_mean_loss_at_most_alpha(at_trial_losses, loss):
    x = at_trial_losses[loss]
    assert x.mean() <= ALPHA + 3 * x.std(ddof=1) / np.sqrt(x.size), x.mean()


def test_at_outer_band_is_tight(at_trial_losses):
    x = at_trial_losses["fnr"]
    low = ALPHA - 2 / (AT_CAL + 1) - 3 * x.std(ddof=1) / np.sqrt(x.size)
    assert x.mean() >= low, x.mean()
