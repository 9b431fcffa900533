"""CONSIGN's guarantee, checked statistically over many random calibration/test draws.

Theory (docs/methods.md §5.2, 5.4; CRC with 0/1 losses): for exchangeable units,
``P[lambda_test* <= lambda_hat] >= 1 - alpha``, where ``lambda_test*`` is the test unit's own
witness level by the same seeded search as the calibration units'. A witness at any
``lam <= lambda_hat`` lies inside the (concentric, larger) box at ``lambda_hat``, so the ground
truth is then in the set. The direct check searches the box at ``lambda_hat`` itself.
Each trial draws fresh i.i.d. units, so trial coverages are i.i.d. with mean at least
``1 - alpha``; the test allows 3 standard errors of Monte-Carlo noise (one-sided false-alarm
rate about 0.1%). The direct check at ``lambda_hat`` (what ``test_metrics`` reports) is held to
the same tolerance.

Data: ground truth drawn from the same low-dimensional model as the samples (a blob whose
radius and horizontal position vary linearly in probability space), so the set can contain it.
"""

import numpy as np
import pytest
import torch

from napari_consign.conformal import MethodOptions
from napari_consign.conformal.consign import CONSIGN
from napari_consign.conformal.consign_calibration import (
    WitnessLevels,
    lambda_hat_from_stars,
    search_lambda_stars,
)
from napari_consign.conformal.consign_decomposition import box_centre_and_radius, decompose_units
from napari_consign.conformal.consign_membership import MembershipChecker
from napari_consign.conformal.consign_search_settings import SearchSettings

#: Many random calibration/test splits: run with the full suite, left out of -m 'not slow'.
pytestmark = pytest.mark.slow

TRIALS, N_CAL, N_TEST, ALPHA, BETA = 200, 9, 10, 0.2, 0.9
SIZE, N_SAMPLES, K = 8, 6, 2
SEARCH = SearchSettings(n_lhs=64, n_starts=4, max_steps=100, patience=20)


def low_rank_blobs(n, size, n_samples, seed):
    """Blobs whose samples and ground truth share two linear modes (radius, x-shift)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    cy, cx = rng.uniform(0.4, 0.6, (2, n, 1, 1)) * size
    r = rng.uniform(0.2, 0.3, (n, 1, 1)) * size
    edge = np.tanh((r - np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)) / 1.5)
    base = 0.5 + 0.4 * edge
    ring = 1.0 - np.abs(edge)
    modes = np.stack([ring, ring * (xx - cx) / r], axis=1)  # (n, 2, H, W)
    z = rng.normal(0.0, 0.25, (n, n_samples, 2))
    p = base[:, None] + np.einsum("nsk,nkhw->nshw", z, modes)
    p += rng.normal(0.0, 0.03, p.shape)
    truth = base + np.einsum("nk,nkhw->nhw", rng.normal(0.0, 0.25, (n, 2)), modes)
    return np.clip(p, 0.0, 1.0).astype(np.float32), (truth > 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def trial_coverage():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n_units = TRIALS * (N_CAL + N_TEST)
        samples, masks = low_rank_blobs(int(n_units * 1.1), SIZE, N_SAMPLES, seed=2024)
        keep = np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))[:n_units]
        assert keep.size == n_units
        samples = samples[keep].reshape(TRIALS, N_CAL + N_TEST, N_SAMPLES, SIZE, SIZE)
        masks = masks[keep].reshape(TRIALS, N_CAL + N_TEST, SIZE, SIZE)
        # calibration units of every trial in one batched search (seeds differ per unit)
        cal = CONSIGN(MethodOptions(beta=BETA, k=K, seed=1), search=SEARCH)
        cal.fit(
            samples[:, :N_CAL].reshape(-1, N_SAMPLES, SIZE, SIZE),
            masks[:, :N_CAL].reshape(-1, SIZE, SIZE),
        )
        stars = cal.lambda_stars(ALPHA).reshape(TRIALS, N_CAL)
        lam_hat = np.array([lambda_hat_from_stars(s, ALPHA, BETA) for s in stars])
        # test units: the direct check at each trial's lambda-hat, and their own lambda*
        test_s = samples[:, N_CAL:].reshape(-1, N_SAMPLES, SIZE, SIZE)
        test_y = masks[:, N_CAL:].reshape(-1, SIZE, SIZE)
        decomps = decompose_units(test_s, K, binary=True)
        seeds = [(2, 1, i) for i in range(len(decomps))]
        checker = MembershipChecker(decomps, test_y, BETA, seeds, SEARCH, "cpu")
        coeffs = np.stack([d.coefficients for d in decomps])
        centre, rho = box_centre_and_radius(coeffs, np.stack([d.singular for d in decomps]), ALPHA)
        units = np.arange(len(decomps))
        lam_unit = np.repeat(lam_hat, N_TEST)
        direct = checker.check(
            units, centre - lam_unit[:, None] * rho, centre + lam_unit[:, None] * rho
        )

        # the test units' own lambda*, by exactly the calibration's witness search
        own = search_lambda_stars(WitnessLevels(checker.search, centre, rho), len(decomps))
    finally:
        torch.set_num_threads(before)
    return {
        "direct": direct.reshape(TRIALS, N_TEST).mean(axis=1),
        "lambda_star": (own <= lam_unit).reshape(TRIALS, N_TEST).mean(axis=1),
    }


@pytest.mark.parametrize("how", ["lambda_star", "direct"])
def test_set_coverage_at_least_one_minus_alpha(trial_coverage, how):
    cov = trial_coverage[how]
    se = cov.std(ddof=1) / np.sqrt(cov.size)
    assert cov.mean() >= 1 - ALPHA - 3 * se, (cov.mean(), se)
