import math

import numpy as np
import pytest

from napari_consign.conformal import (
    InfeasibleAlphaError,
    StepRiskCurve,
    min_calibration_size,
    min_feasible_alpha,
    risk_bound,
)
from napari_consign.conformal.errors import ConformalInputError


def test_risk_bound_formula():
    assert risk_bound(0.5, 3) == pytest.approx(1 / 3)
    assert risk_bound(0.1, 9) == pytest.approx(0.0)


@pytest.mark.parametrize(("alpha", "n_min"), [(0.1, 9), (0.05, 19), (0.2, 4), (0.5, 1)])
def test_min_calibration_size(alpha, n_min):
    assert min_calibration_size(alpha) == n_min
    risk_bound(alpha, n_min)  # feasible
    if n_min > 1:
        with pytest.raises(InfeasibleAlphaError):
            risk_bound(alpha, n_min - 1)


def test_infeasible_message_names_the_fix():
    with pytest.raises(InfeasibleAlphaError, match=r"at least 9 .* alpha >= 0\.1667"):
        risk_bound(0.1, 5)
    assert min_feasible_alpha(5) == pytest.approx(1 / 6)


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan"), "x"])
def test_alpha_outside_unit_interval(alpha):
    with pytest.raises(ConformalInputError, match="alpha"):
        risk_bound(alpha, 100)


def test_curve_matches_brute_force():
    rng = np.random.default_rng(3)
    keys = np.round(rng.uniform(-1, 1, 200), 2)  # ties on purpose
    w = rng.uniform(0, 1, 200)
    w /= w.sum()
    curve = StepRiskCurve.from_keys(keys, w, n=50)
    for lam in np.linspace(-1.2, 1.2, 97):
        assert curve.risk(lam) == pytest.approx(w[keys > lam].sum(), abs=1e-12)
    for alpha in (0.05, 0.1, 0.3, 0.7):
        r = risk_bound(alpha, 50)
        lam = curve.solve(alpha)
        feasible = [k for k in np.unique(keys) if w[keys > k].sum() <= r + 1e-12]
        assert lam == (min(feasible) if w.sum() > r else -math.inf)


def test_curve_solve_is_monotone_in_alpha():
    rng = np.random.default_rng(4)
    curve = StepRiskCurve.from_keys(rng.normal(size=500), np.full(500, 1 / 500), n=100)
    lams = [curve.solve(a) for a in np.linspace(0.01, 0.99, 50)]
    assert np.all(np.diff(lams) <= 0)


def test_curve_rejects_nan_keys():
    with pytest.raises(ConformalInputError, match="NaN"):
        StepRiskCurve.from_keys(np.array([0.1, np.nan]), np.array([0.5, 0.5]), n=1)


def test_infinite_keys():
    # +inf: a unit never covered keeps counting; -inf: never a loss.
    curve = StepRiskCurve.from_keys(np.array([1.0, np.inf, np.inf]), np.full(3, 1 / 3), n=3)
    assert curve.risk(5.0) == pytest.approx(2 / 3)
    assert curve.solve(0.5) == math.inf  # r* = 1/3 < 2/3 at every finite lam
    curve = StepRiskCurve.from_keys(np.array([1.0, -np.inf, -np.inf]), np.full(3, 1 / 3), n=3)
    assert curve.solve(0.5) == -math.inf  # total 1/3 <= r*
