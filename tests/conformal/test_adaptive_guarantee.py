"""COAT's and AT's guarantee over many random calibration/test draws (docs/methods.md §3.3, 4.4,
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

#: Many random calibration/test splits: run with the full suite, left out of -m 'not slow'.
pytestmark = pytest.mark.slow

TRIALS, N_CAL, N_TEST, ALPHA = 300, 40, 40, 0.1


def _set(n, seed):
    d = lesion_cases(n, size=24, n_samples=2, seed=seed)
    return SegmentationSet.from_samples(d["samples"], d["masks"], d["images"])


def _losses_over_draws(method, trials: int, n_cal: int, n_test: int, seed: int) -> dict:
    """Mean test FNR and inner loss of a fixed-predictor method over fresh i.i.d. draws."""
    pool = _set(trials * (n_cal + n_test), seed=seed)
    out = {"fnr": [], "inner": []}
    for t in range(trials):
        idx = np.arange(t * (n_cal + n_test), (t + 1) * (n_cal + n_test))
        cal, test = pool.subset(idx[:n_cal]), pool.subset(idx[n_cal:])
        method.fit_shifts(cal)
        rows = [
            (fnr(o, y), inner_loss(i, y))
            for (i, o), y in zip(method.predict_masks(test, ALPHA), test.masks, strict=True)
        ]
        out["fnr"].append(np.mean([r[0] for r in rows]))
        out["inner"].append(np.mean([r[1] for r in rows]))
    return {k: np.asarray(v) for k, v in out.items()}


# name: (predictor, its training seed, draws, calibration and test units per draw, pool seed).
# AT is kept fast (a small input size, fewer units per draw): ~10 s on one core.
DESIGNS = {
    "coat": (lambda: COAT(config=PredictorConfig(epochs=10, seed=0)), 999, TRIALS, N_CAL, N_TEST,
             1000),
    "at": (lambda: AT(config=PredictorConfig(objective="at", epochs=10, seed=0, input_size=24)),
           998, 200, 30, 30, 2000),
}  # fmt: skip


@pytest.fixture(scope="module", params=list(DESIGNS))
def draws(request) -> tuple[dict, int]:
    """Per-draw mean losses of COAT or AT with a predictor trained once, and n_cal."""
    make, train_seed, trials, n_cal, n_test, pool_seed = DESIGNS[request.param]
    method = make()
    method.train(_set(60, seed=train_seed))
    return _losses_over_draws(method, trials, n_cal, n_test, seed=pool_seed), n_cal


@pytest.mark.parametrize("loss", ["fnr", "inner"])
def test_mean_loss_at_most_alpha(draws, loss):
    x = draws[0][loss]
    assert x.mean() <= ALPHA + 3 * x.std(ddof=1) / np.sqrt(x.size), x.mean()


def test_outer_band_is_tight(draws):
    x, n_cal = draws[0]["fnr"], draws[1]
    assert x.mean() >= ALPHA - 2 / (n_cal + 1) - 3 * x.std(ddof=1) / np.sqrt(x.size), x.mean()
