"""CONSIGN calibration: lambda_i* search, order statistic vs the authors' loop, failures."""

import math

import numpy as np
import pytest
import torch

from napari_consign.conformal import (
    ConformalInputError,
    InfeasibleAlphaError,
    MethodOptions,
    StepRiskCurve,
    registry,
)
from napari_consign.conformal.consign import CONSIGN
from napari_consign.conformal.consign_calibration import (
    LambdaMaxError,
    authors_lambda_hat,
    grid_values,
    lambda_hat_from_stars,
    search_lambda_stars,
)
from napari_consign.conformal.consign_decomposition import DecompositionStack, decompose_units
from napari_consign.conformal.consign_membership import MembershipChecker
from napari_consign.conformal.consign_search_settings import SearchSettings
from napari_consign.conformal.dataset import SegmentationSet
from napari_consign.conformal.evaluation import evaluate
from napari_consign.conformal.set_metrics import beta_scores
from napari_consign.synthetic import lesion_cases

FAST = SearchSettings(n_lhs=64, n_starts=4, max_steps=100, patience=20)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class MonotoneCertificates:
    """Synthetic check: unit i is certified at lam iff lam >= t_i (grid values or inf)."""

    def __init__(self, thresholds):
        self.t = np.asarray(thresholds, dtype=np.float64)
        self.calls = 0

    def __call__(self, units, lams):
        self.calls += len(units)
        return lams >= self.t[units] - 1e-12


def _thresholds(rng, n, p_inf=0.0):
    t = grid_values(rng.integers(1, 50001, n).astype(float) ** rng.uniform(0.3, 1.0, n) // 1)
    t = np.maximum(t, 0.01)
    t[rng.uniform(size=n) < p_inf] = np.inf
    return t


@pytest.mark.parametrize("seed", range(3))
def test_galloping_bisection_finds_exact_thresholds(seed):
    rng = np.random.default_rng(seed)
    t = _thresholds(rng, 200, p_inf=0.1)
    t[:3] = [0.01, 0.02, 500.0]  # first grid value, second, last
    check = MonotoneCertificates(t)
    stars = search_lambda_stars(check, t.size)
    np.testing.assert_array_equal(stars, t)
    assert check.calls <= t.size * 2 * math.ceil(math.log2(50000) + 1)


@pytest.mark.parametrize("n", [9, 19, 40, 101])
@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2, 0.5])
def test_order_statistic_equals_authors_loop_and_crc_rule(n, alpha):
    rng = np.random.default_rng(n * 100 + int(alpha * 100))
    t = _thresholds(rng, n) / 100.0  # keep the authors' loop short
    t = np.maximum(np.round(t, 2), 0.01)
    if n < (1 - alpha) / alpha:
        with pytest.raises(InfeasibleAlphaError):
            lambda_hat_from_stars(t, alpha, beta=0.9)
        return
    k = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    expected = np.sort(t)[k - 1]
    ours = lambda_hat_from_stars(search_lambda_stars(MonotoneCertificates(t), n), alpha, 0.9)
    crc = StepRiskCurve.from_keys(t, np.full(n, 1 / n), n).solve(alpha)
    authors = authors_lambda_hat(MonotoneCertificates(t), n, alpha)
    assert ours == expected == crc == pytest.approx(authors, abs=1e-12)


def test_uncertified_units_give_the_lambda_max_error():
    n, alpha = 19, 0.1  # k = 18: one never-certified unit is tolerated, two are not
    t = np.linspace(0.01, 3.0, n).round(2)
    t[0] = np.inf
    assert lambda_hat_from_stars(t, alpha, 0.9) == np.sort(t)[17] == 3.0
    t[1] = np.inf
    with pytest.raises(LambdaMaxError) as info:
        lambda_hat_from_stars(search_lambda_stars(MonotoneCertificates(t), n), alpha, 0.9)
    message = str(info.value)
    for part in ("lambda_max = 500", "17 of 19", "k = 18", "alpha = 0.1", "beta = 0.9", "relax"):
        assert part in message.lower() or part in message
    with pytest.raises(LambdaMaxError, match="lambda_max"):
        authors_lambda_hat(MonotoneCertificates(t), n, alpha, lam_max=5.0)


def test_too_few_units_is_the_shared_infeasible_error():
    with pytest.raises(InfeasibleAlphaError, match="at least 19"):
        lambda_hat_from_stars(np.full(10, 0.5), 0.05, 0.9)
    d = lesion_cases(8, size=8, n_samples=4, seed=0)
    m = CONSIGN(MethodOptions(k=2), search=FAST).fit(d["samples"], d["masks"])
    with pytest.raises(InfeasibleAlphaError):
        m.lambda_hat(0.1)


@pytest.fixture(scope="module")
def small():
    d = lesion_cases(30, size=10, n_samples=6, seed=21)
    return d["samples"], d["masks"]


def test_membership_is_monotone_in_lambda_and_the_order_statistic_exact(small):
    """Member at lam implies member at every larger lam (checked directly on a fine grid), and
    the authors' step-by-step loop over that membership gives exactly the order statistic."""
    samples, masks = small
    alpha = 0.2
    m = CONSIGN(MethodOptions(beta=0.8, k=2), search=FAST).fit(samples, masks)
    lams = grid_values(np.arange(1, 301))
    table = np.stack([m.member(alpha, lam) for lam in lams])  # (lambda, unit)
    assert table.any() and not table.all()
    assert (np.diff(table.astype(int), axis=0) >= 0).all()  # never member -> non-member

    def member(units, lams):
        return m.lambda_stars(alpha)[units] <= lams + 1e-12

    assert authors_lambda_hat(member, m.n_used, alpha) == m.lambda_hat(alpha)


def test_every_lambda_star_has_a_witness_at_exactly_that_level(small):
    """lambda_i* is the smallest grid box holding a witness the search found, and the witness
    passes the hard beta-check computed independently in numpy."""
    samples, masks = small
    alpha, beta = 0.2, 0.8
    m = CONSIGN(MethodOptions(beta=beta, k=2), search=FAST).fit(samples, masks)
    stars, witnesses = m.witness_search(m._checker, m._coeffs, m._sing, alpha)
    np.testing.assert_array_equal(stars, m.lambda_stars(alpha))
    decomps = decompose_units(samples, 2, binary=True)
    finite = np.flatnonzero(np.isfinite(stars))
    assert finite.size > 20
    for i in finite:
        d, c = decomps[i], witnesses[i]
        lo, hi = d.box(alpha, stars[i])
        assert np.all((lo <= c) & (c <= hi))
        if stars[i] > 0.01 + 1e-12:
            lo, hi = d.box(alpha, stars[i] - 0.01)
            assert not np.all((lo <= c) & (c <= hi))
        assert beta_scores(masks[i], d.labels(c)) > beta


def test_fit_on_a_streamed_decomposition_equals_fit_on_samples(small):
    """Calibrating from per-unit decompositions filled one at a time (as the sampler streams
    them; raw samples of all units never held) gives the same lambda_i* and lambda-hat."""
    samples, masks = small
    masks = masks.copy()
    masks[3] = 0  # an empty unit: excluded and counted the same way
    stack = DecompositionStack.empty(len(samples), samples.shape[2:], 2, samples.shape[1])
    for i in range(len(samples)):
        stack.fill(i, samples[i : i + 1])
    raw = CONSIGN(MethodOptions(beta=0.8, k=2), search=FAST).fit(samples, masks)
    streamed = CONSIGN(MethodOptions(beta=0.8, k=2), search=FAST).fit(stack, masks)
    assert (streamed.n_used, streamed.n_empty) == (raw.n_used, raw.n_empty) == (29, 1)
    np.testing.assert_array_equal(streamed.lambda_stars(0.2), raw.lambda_stars(0.2))
    assert streamed.lambda_hat(0.2) == raw.lambda_hat(0.2)
    with pytest.raises(ConformalInputError, match="masks have shape"):
        CONSIGN(MethodOptions(beta=0.8, k=2)).fit(stack, masks[:5])


def test_unreachable_beta_raises(small):
    samples, masks = small
    m = CONSIGN(MethodOptions(beta=0.999, k=2), search=FAST, lam_max=0.05)
    m.fit(samples, masks)
    with pytest.raises(LambdaMaxError, match=r"(?i)relax alpha .* or beta"):
        m.lambda_hat(0.1)
    with pytest.raises(LambdaMaxError):
        m.unit_bands(samples[0])


def test_membership_check_finds_planted_witness_and_rejects_impossible_truths(small):
    samples, _ = small
    rng = np.random.default_rng(3)
    decomps = decompose_units(samples[:6], 2, binary=True)
    truths, lower, upper = [], [], []
    for d in decomps:
        lo, hi = d.box(0.2, 1.0)
        truths.append(d.labels(lo + rng.uniform(size=2) * (hi - lo)))  # planted witness
        lower.append(lo)
        upper.append(hi)
    truths += [np.ones(d.spatial, np.int64) for d in decomps]  # all foreground: impossible
    checker = MembershipChecker(
        decomps * 2, truths, beta=0.99, seeds=range(12), settings=FAST, device="cpu"
    )
    ok = checker.check(np.arange(12), np.array(lower * 2), np.array(upper * 2))
    assert ok[:6].all() and not ok[6:].any()


def test_chunking_does_not_change_the_check(small):
    samples, masks = small
    decomps = decompose_units(samples[:8], 2, binary=True)
    lower, upper = zip(*(d.box(0.2, 0.3) for d in decomps), strict=True)
    results = []
    for budget in (None, 500):
        settings = SearchSettings(
            n_lhs=64, n_starts=4, max_steps=100, patience=20, max_elements=budget
        )
        checker = MembershipChecker(decomps, masks[:8], 0.9, range(8), settings, "cpu")
        results.append(checker.check(np.arange(8), np.array(lower), np.array(upper)))
    np.testing.assert_array_equal(*results)
    assert 0 < results[0].sum() < 8  # some certified, some not


def test_hard_score_matches_numpy(small):
    samples, masks = small
    decomps = decompose_units(samples[:4], 2, binary=True)
    checker = MembershipChecker(decomps, masks[:4], 0.5, range(4), FAST, "cpu")
    rng = np.random.default_rng(1)
    c = rng.normal(0, 3, (4, 50, 2))
    batch = checker._batch(np.arange(4))
    for beta in (0.5, 0.8):
        checker.beta = beta
        _, passed = checker._evaluate(torch.from_numpy(c), batch, soft=False)
        for i, d in enumerate(decomps):
            expected = beta_scores(masks[i], d.labels(c[i])) > beta
            np.testing.assert_array_equal(passed[i].numpy(), expected)


def test_evaluate_reports_set_metrics(monkeypatch):
    monkeypatch.setitem(registry.METHODS, "consign", ".consign:CONSIGN")
    monkeypatch.setitem(registry.METHODS, "pixelwise", ".pixelwise:PixelwiseAPS")
    d = lesion_cases(30, size=8, n_samples=5, seed=2)
    data = SegmentationSet.from_samples(d["samples"], d["masks"])
    report = evaluate(
        data, ["consign", "pixelwise"], alpha=0.2, splits=1, options=MethodOptions(beta=0.7, k=2)
    )
    for name in ("consign", "pixelwise"):
        metrics = report["methods"][name]
        for key in ("set_coverage", "sEC_100", "chao1_100", "corr_100", "lambda_hat"):
            assert np.isfinite(metrics[key]["mean"]), (name, key)


def _random_points(rng, lower, upper, n=200):
    corners = np.array(np.meshgrid(*zip(lower, upper, strict=True))).reshape(len(lower), -1).T
    inside = lower + rng.uniform(size=(n, len(lower))) * (upper - lower)
    return np.concatenate([corners, inside])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_pruning_bound_is_above_every_score_in_the_box(small, n_classes):
    """The closed-form recall bound never falls below the score of a point of the box."""
    rng = np.random.default_rng(n_classes)
    if n_classes == 2:
        samples, masks = small
        decomps = decompose_units(samples[:10], 2, binary=True)
    else:
        logits = rng.normal(0, 1, (10, 6, 3, 8, 8)) + rng.normal(0, 2, (10, 1, 3, 8, 8))
        probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
        masks = np.argmax(logits.mean(axis=1) + rng.normal(0, 1, (10, 3, 8, 8)), axis=1)
        decomps = decompose_units(probs, 2, binary=False)
    checker = MembershipChecker(decomps, masks[:10], 0.5, range(10), FAST, "cpu")
    for i, d in enumerate(decomps):
        for scale in (0.1, 1.0, 20.0):
            lo, hi = d.box(0.2, scale)
            bound = checker._score_bound(np.array([i]), lo[None], hi[None])[0]
            scores = beta_scores(masks[i], d.labels(_random_points(rng, lo, hi)))
            assert scores.max() <= bound + 1e-12


def test_pruning_changes_no_certificate(small):
    samples, masks = small
    truths = np.concatenate([masks, np.ones_like(masks[:6])])  # all foreground: mostly out
    stars = []
    for prune in (True, False):
        settings = SearchSettings(n_lhs=64, n_starts=4, max_steps=100, patience=20, prune=prune)
        m = CONSIGN(MethodOptions(beta=0.8, k=2), search=settings)
        m.fit(np.concatenate([samples, samples[:6]]), truths)
        stars.append(m.lambda_stars(0.2))
    np.testing.assert_array_equal(*stars)
    assert np.isinf(stars[0]).any() and np.isfinite(stars[0]).any()
