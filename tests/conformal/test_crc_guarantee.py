"""CRC's guarantee, checked statistically over many random calibration/test draws.

Theory (Angelopoulos et al., Thm 1 and 2; B = 1): for exchangeable units,
``E[L_test] <= alpha``, and for i.i.d. units whose losses have no shared jumps (continuous
scores), ``E[L_test] >= alpha - 2/(n+1)``. Each trial draws fresh i.i.d. units, so the trial
means are i.i.d. with that expectation; the test allows 3 standard errors of Monte-Carlo noise
(one-sided false-alarm rate about 0.1%).
"""

import numpy as np
import pytest

from napari_consign.conformal import CRC
from napari_consign.conformal.metrics import fnr, inner_loss
from napari_consign.synthetic import lesion_cases

#: Many random calibration/test splits: run with the full suite, left out of -m 'not slow'.
pytestmark = pytest.mark.slow

TRIALS, N_CAL, N_TEST = 500, 40, 40


@pytest.fixture(scope="module")
def trial_losses():
    d = lesion_cases(TRIALS * (N_CAL + N_TEST), size=24, n_samples=2, seed=123)
    scores = d["samples"].mean(axis=1)
    masks = d["masks"].astype(bool)
    keep = masks.any(axis=(1, 2))
    scores, masks = scores[keep], masks[keep]
    per_trial = len(scores) // TRIALS
    out = {"fnr": [], "inner": [], "inner_raw": []}
    for t in range(TRIALS):
        sl = slice(t * per_trial, (t + 1) * per_trial)
        s, m = scores[sl], masks[sl]
        crc = CRC().fit(s[:N_CAL], m[:N_CAL])
        th = crc.thresholds(ALPHA)
        raw = crc.raw_inner_threshold(ALPHA)
        test = zip(s[N_CAL:], m[N_CAL:], strict=True)
        rows = [
            (fnr(x >= th.outer, y), inner_loss(x >= th.inner, y), inner_loss(x >= raw, y))
            for x, y in test
        ]
        for key, col in zip(out, zip(*rows, strict=True), strict=True):
            out[key].append(np.mean(col))
    return {k: np.asarray(v) for k, v in out.items()}


ALPHA = 0.1


def _mean_and_se(x):
    return x.mean(), x.std(ddof=1) / np.sqrt(x.size)


@pytest.mark.parametrize("loss", ["fnr", "inner", "inner_raw"])
def test_mean_loss_at_most_alpha(trial_losses, loss):
    mean, se = _mean_and_se(trial_losses[loss])
    assert mean <= ALPHA + 3 * se, (mean, se)


@pytest.mark.parametrize("loss", ["fnr", "inner_raw"])
def test_crc_is_tight(trial_losses, loss):
    mean, se = _mean_and_se(trial_losses[loss])
    assert mean >= ALPHA - 2 / (N_CAL + 1) - 3 * se, (mean, se)
