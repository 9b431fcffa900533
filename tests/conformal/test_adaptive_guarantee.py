"""COAT's guarantee over many random calibration/test draws (METHODS.md 4.4, oracle test 3).

f_D is trained once on independent units and then fixed: validity needs only that f_D never
saw the calibration units. Each trial draws fresh i.i.d. calibration and test units; theory
(CRC on the shifted family) gives alpha - 2/(n+1) <= E[loss] <= alpha, and the test allows 3
standard errors of Monte-Carlo noise over the trials.
"""

import numpy as np
import pytest

from napari_consign.conformal import SegmentationSet
from napari_consign.conformal.adaptive import COAT
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
