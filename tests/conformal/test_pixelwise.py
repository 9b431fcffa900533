"""Pixel-wise APS baseline with the beta-loss (docs/methods.md §6), and CONSIGN vs PW set sizes."""

import numpy as np
import pytest
import torch

from napari_consign.conformal import ConformalInputError, InfeasibleAlphaError, MethodOptions
from napari_consign.conformal.consign import CONSIGN
from napari_consign.conformal.consign_search_settings import SearchSettings
from napari_consign.conformal.dataset import SegmentationSet
from napari_consign.conformal.pixelwise import (
    LAMBDA_GRID,
    PixelwiseAPS,
    aps_keys,
    class_probabilities,
    unit_lambda_star,
)
from napari_consign.conformal.set_metrics import beta_scores
from napari_consign.synthetic import lesion_cases


def literal_aps(probs, lam):
    """APS sets by the definition: top m labels, m = min{j : S_j > lam}, else all."""
    n_lab, n_pix = probs.shape
    out = np.zeros_like(probs, dtype=bool)
    for p in range(n_pix):
        order = np.argsort(-probs[:, p], kind="stable")
        cums = np.cumsum(probs[order, p])
        above = np.flatnonzero(cums > lam)
        m = above[0] + 1 if above.size else n_lab
        out[order[:m], p] = True
    return out


def literal_lambda_star(probs, truth, beta):
    for lam in LAMBDA_GRID:
        sets = literal_aps(probs, lam)
        pred_ok = sets[truth, np.arange(truth.size)]
        score = np.mean([pred_ok[truth == lab].mean() for lab in np.unique(truth)])
        if score > beta + 1e-12:
            return lam
    return 1.0


def random_probs(rng, n_lab, n_pix, ties=True):
    p = rng.dirichlet(np.full(n_lab, 0.7), n_pix).T
    if ties:
        p[:, :5] = 1.0 / n_lab  # all tied
        p[:2, 5:8] = p[:2, 5:8].mean(axis=0)  # pairwise ties
        p[0, 8] = 0.0
        p[:, 8] /= p[:, 8].sum()
    return p


@pytest.mark.parametrize("n_lab", [2, 3, 5])
def test_keys_reproduce_literal_aps_sets(n_lab):
    rng = np.random.default_rng(n_lab)
    probs = random_probs(rng, n_lab, 60)
    keys = aps_keys(probs)
    for lam in [0.0, 0.05, 0.2, 1 / n_lab, 0.5, 0.77, 0.99]:
        np.testing.assert_array_equal(keys <= lam, literal_aps(probs, lam))
    # lam = 1 keeps every label (keys are clipped to 1; a float cumsum may exceed 1)
    assert np.all(keys <= 1.0)


def test_binary_closed_form():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=200)
    p[:3] = [0.5, 0.3, 0.9]
    pw = PixelwiseAPS(MethodOptions(beta=0.5))
    keys = pw.keys(p)
    for lam in LAMBDA_GRID[::7]:
        fg_top = p > 1.0 - p  # ties rank background first
        p_top = np.maximum(p, 1.0 - p)
        np.testing.assert_array_equal(keys[1] <= lam, fg_top | (p_top <= lam))
        np.testing.assert_array_equal(keys[0] > lam, fg_top & (p > lam))


@pytest.mark.parametrize("n_lab", [2, 4])
def test_unit_lambda_star_equals_grid_loop(n_lab):
    rng = np.random.default_rng(10 + n_lab)
    for _ in range(5):
        probs = random_probs(rng, n_lab, 40, ties=False)
        truth = np.where(
            rng.uniform(size=40) < 0.7, probs.argmax(axis=0), rng.integers(0, n_lab, 40)
        )
        for beta in (0.5, 0.8, 0.95):
            assert unit_lambda_star(aps_keys(probs), truth, beta) == literal_lambda_star(
                probs, truth, beta
            )


@pytest.fixture(scope="module")
def lesions():
    d = lesion_cases(80, size=12, n_samples=6, seed=31)
    return SegmentationSet.from_samples(d["samples"], d["masks"])


def test_lambda_hat_equals_authors_loop(lesions):
    pw = PixelwiseAPS(MethodOptions(beta=0.85))
    pw.calibrate(lesions)
    n = pw.n_used
    for alpha in (0.05, 0.1, 0.2, 0.4):
        covered = np.zeros(n, bool)
        for lam in LAMBDA_GRID:  # the authors' loop: stop at the first valid lambda
            covered |= pw.lambda_stars <= lam
            if 1 - covered.sum() / n <= alpha - (1 - alpha) / n + 1e-12:
                break
        assert pw.lambda_hat(alpha) == lam
    with pytest.raises(InfeasibleAlphaError):
        pw.lambda_hat(1 / (n + 1) / 2)


def test_bands_are_nested_and_equal_direct_prediction(lesions):
    pw = PixelwiseAPS(MethodOptions(beta=0.9))
    pw.calibrate(lesions.subset(np.arange(60)))
    probs = lesions.samples[70].mean(axis=0, dtype=np.float64)
    bands = pw.map_bands(probs)
    previous = None
    for alpha in bands.alphas:
        inner, outer = bands.masks(alpha)
        exp_inner, exp_outer = pw.predict(probs, alpha)
        np.testing.assert_array_equal(outer, exp_outer)
        np.testing.assert_array_equal(inner, exp_inner & exp_outer)
        if previous is not None:
            assert not np.any(outer & ~previous[1]) and not np.any(previous[0] & ~inner)
        previous = (inner, outer)
    drawn = pw.sample(probs, 0.1, 200, seed=0)
    inner, outer = pw.predict(probs, 0.1)
    assert not np.any(drawn.astype(bool) & ~outer) and not np.any(~drawn.astype(bool) & inner)


def test_multiclass_sets_and_samples():
    rng = np.random.default_rng(4)
    probs = np.stack([random_probs(rng, 3, 36, ties=False).reshape(3, 6, 6) for _ in range(30)])
    masks = probs.argmax(axis=1)
    masks[:, 0, :3] = 2
    pw = PixelwiseAPS(MethodOptions(beta=0.9)).fit(probs, masks)
    sets = pw.sets(probs[0], 0.2)
    drawn = pw.sample(probs[0], 0.2, 300)
    assert sets.shape == (3, 6, 6)
    for lab in range(3):
        assert not np.any((drawn == lab).any(axis=0) & ~sets[lab])
    inner, outer = pw.predict(probs[0], 0.2)
    np.testing.assert_array_equal(outer, sets[1:].any(axis=0))
    np.testing.assert_array_equal(inner, ~sets[0])


@pytest.mark.slow
def test_guarantee_over_random_draws():
    """Exact set coverage over 400 fresh draws: mean >= 1 - alpha - 3 SE (and <= 1 - alpha +
    1/(n+1) + 3 SE would need continuous lambda_i*; the 0.01 grid makes ties, so no upper test)."""
    trials, n_cal, n_test, alpha, beta = 400, 19, 20, 0.1, 0.9
    d = lesion_cases(trials * (n_cal + n_test), size=10, n_samples=4, seed=77)
    probs = d["samples"].mean(axis=1, dtype=np.float64)
    masks = d["masks"]
    keep = np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))
    per = len(keep) // trials
    cov = []
    for t in range(trials):
        idx = keep[t * per : (t + 1) * per]
        cal, test = idx[:n_cal], idx[n_cal:]
        pw = PixelwiseAPS(MethodOptions(beta=beta)).fit(probs[cal], masks[cal])
        lam = pw.lambda_hat(alpha)
        cov.append(
            np.mean([unit_lambda_star(pw.keys(probs[i]), masks[i], beta) <= lam for i in test])
        )
    cov = np.asarray(cov)
    assert cov.mean() >= 1 - alpha - 3 * cov.std(ddof=1) / np.sqrt(trials), cov.mean()


def test_consign_sets_are_far_smaller_at_matched_coverage(lesions):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cal, test = lesions.subset(np.arange(50)), lesions.subset(np.arange(50, 80))
        opts = MethodOptions(beta=0.9, k=3)
        consign = CONSIGN(opts, search=SearchSettings(n_lhs=128, n_starts=4, max_steps=200))
        consign.calibrate(cal)
        pw = PixelwiseAPS(opts)
        pw.calibrate(cal)
        ours, theirs = consign.test_metrics(test, 0.1), pw.test_metrics(test, 0.1)
    finally:
        torch.set_num_threads(before)
    assert ours["chao1_100"] * 5 < theirs["chao1_100"], (ours, theirs)
    assert ours["corr_100"] > theirs["corr_100"], (ours, theirs)


def test_bad_input():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(10, 4, 4))
    y = (p > 0.5).astype(np.uint8)
    with pytest.raises(ConformalInputError, match="beta"):
        PixelwiseAPS(MethodOptions(beta=1.0))
    bad = y.copy()
    bad[0, 0, 0] = 3
    with pytest.raises(ConformalInputError, match="labels in \\[0, 3\\]"):
        PixelwiseAPS().fit(p, bad)
    with pytest.raises(ConformalInputError, match="do not match"):
        PixelwiseAPS().fit(p, y[:, :3])
    with pytest.raises(ConformalInputError, match="empty"):
        PixelwiseAPS().fit(p, np.zeros_like(y))
    with pytest.raises(ConformalInputError, match="outside \\[0, 1\\]"):
        PixelwiseAPS().fit(p + 1, y)
    assert class_probabilities(p[0], True).shape == (2, 4, 4)
    assert beta_scores(y[0], y[0]) == 1.0
