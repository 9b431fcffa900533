"""CONSIGN calibration: per-unit lambda_i* and lambda-hat as an order statistic.

See docs/methods.md §5.4.

A *check* is any function ``check(units, lams) -> bool array`` certifying unit ``units[j]`` at
``lams[j]``. ``lambda_i*`` is the smallest grid value ``lam0, 2 lam0, ...`` (default 0.01 steps) at
which unit ``i`` is certified, found by galloping (``lam0, 2 lam0, 4 lam0, ...`` capped at
``lambda_max``) and bisection on the grid, all units in lock-step (one batched check per round).
Membership is defined by the witnesses found: unit ``i`` is a member at ``lam`` iff
``lambda_i* <= lam``, where ``lambda_i*`` is the smallest grid lambda whose box holds a witness
the search found (:class:`WitnessLevels` turns each witness into that level). A witness inside
the box at ``lam`` stays inside every larger, concentric box, so membership is monotone in
lambda *by construction*, whatever the search does inside; the loss ``1[lambda_i* > lam]`` is at
least the true loss and comes from the same seeded procedure for every unit, so CRC's guarantee
holds for it, and lambda-hat is exact about this membership.

lambda-hat is CRC with 0/1 losses: keys ``lambda_i*`` (``inf`` if never certified), weights
``1/n``, i.e. the ``k``-th smallest ``lambda_i*`` with ``k = ceil((n+1)(1-alpha))``.
:func:`authors_lambda_hat` is the authors' grid loop, the reference it is tested against; with
a check that is monotone in lambda both give the same value, and in general
``lambda-hat >= authors' value`` (each ``lambda_i*`` is a certified grid value, so at least the
first one the loop meets). With the membership ``lambda_i* <= lam`` both are equal exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .crc_rule import StepRiskCurve, min_calibration_size, risk_bound
from .errors import ConformalInputError

Check = Callable[[np.ndarray, np.ndarray], np.ndarray]

LAMBDA_STEP = 0.01
LAMBDA_MAX = 500.0


class LambdaMaxError(ConformalInputError):
    """CONSIGN could not cover enough calibration images before lambda reached lambda_max."""


def grid_values(index: np.ndarray, step: float = LAMBDA_STEP) -> np.ndarray:
    """Grid lambdas ``index * step``, computed as ``index / (1/step)`` when that is exact."""
    inv = 1.0 / step
    index = np.asarray(index, dtype=np.float64)
    return index / round(inv) if abs(inv - round(inv)) < 1e-9 else index * step


def _grid_size(step: float, lam_max: float) -> int:
    if not step > 0 or not lam_max >= step:
        raise ConformalInputError("need 0 < lambda step <= lambda_max")
    return math.floor(lam_max / step + 1e-9)


def search_lambda_stars(
    check: Check, n: int, step: float = LAMBDA_STEP, lam_max: float = LAMBDA_MAX
) -> np.ndarray:
    """``lambda_i*`` for units ``0..n-1`` by galloping then bisection (``inf``: never certified).

    ``check(units, lams)`` returns either booleans (certified at ``lams``) or *witness levels*:
    the smallest grid lambda whose box holds the witness found at ``lams`` (``<= lams``), or
    ``inf`` where none was found. A level below the probe moves the upper end of the bracket
    straight there. The result is the smallest certified grid value the search met.
    """
    top = _grid_size(step, lam_max)
    lo = np.zeros(n, dtype=np.int64)  # largest grid index found uncertified (0: none)
    hi = np.full(n, -1, dtype=np.int64)  # smallest grid index certified (-1: none yet)
    probe = np.ones(n, dtype=np.int64)
    galloping = np.ones(n, dtype=bool)

    def run(units: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Probe ``units`` at grid ``index``; record certificates; return which succeeded."""
        lams = grid_values(index, step)
        out = np.asarray(check(units, lams))
        level = np.where(out, lams, np.inf) if out.dtype == bool else out.astype(np.float64)
        ok = np.isfinite(level)
        found = np.minimum(index[ok], np.maximum(np.rint(level[ok] / step), 1).astype(np.int64))
        hi[units[ok]] = np.where(hi[units[ok]] > 0, np.minimum(hi[units[ok]], found), found)
        return ok

    while galloping.any():
        units = np.flatnonzero(galloping)
        ok = run(units, probe[units])
        failed = units[~ok]
        lo[failed] = probe[failed]
        galloping[units[ok]] = False
        galloping[failed[probe[failed] >= top]] = False
        probe[failed] = np.minimum(2 * probe[failed], top)
    while True:
        units = np.flatnonzero((hi > 0) & (hi - lo > 1))
        if units.size == 0:
            break
        mid = (lo[units] + hi[units]) // 2
        ok = run(units, mid)
        lo[units[~ok]] = mid[~ok]
    return np.where(hi > 0, grid_values(np.maximum(hi, 0), step), np.inf)


class WitnessLevels:
    """A level-returning check for :func:`search_lambda_stars` over boxes ``centre +- lam rho``.

    ``search(units, lower, upper, hints)`` returns ``(found, witness)``. Each unit's latest
    witness is kept in :attr:`witnesses` and offered as a hint at its next (smaller) probe. The
    level of a witness ``c`` is the smallest grid lambda whose box ``[centre - lam rho, centre +
    lam rho]`` holds it (checked with exactly that formula). In :func:`search_lambda_stars`
    every later success is at a smaller probe, so the kept witness is the one whose level is
    the unit's ``lambda_i*``.
    """

    def __init__(
        self,
        search: Callable[..., tuple[np.ndarray, np.ndarray]],
        centre: np.ndarray,
        rho: np.ndarray,
        step: float = LAMBDA_STEP,
    ) -> None:
        self.search, self.centre, self.rho, self.step = search, centre, rho, step
        self.witnesses = np.full(centre.shape, np.nan)

    def __call__(self, units: np.ndarray, lams: np.ndarray) -> np.ndarray:
        half = lams[:, None] * self.rho[units]
        m = self.centre[units]
        found, c = self.search(units, m - half, m + half, self.witnesses[units])
        level = np.full(units.size, np.inf)
        if found.any():
            c, m = c[found], m[found]
            level[found] = np.minimum(self.level(c, m, self.rho[units[found]]), lams[found])
            self.witnesses[units[found]] = c
        return level

    def level(self, c: np.ndarray, m: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Smallest grid lambda with ``m - lam r <= c <= m + lam r`` (rows of ``(b, K)``)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            need = np.where(r > 0, np.abs(c - m) / r, 0.0).max(axis=1)
        index = np.maximum(np.ceil(need / self.step - 1e-9), 1.0)
        for _ in range(2):  # rounding: step up until the box formula holds the witness
            lam = grid_values(index, self.step)[:, None]
            inside = ((m - lam * r <= c) & (c <= m + lam * r)).all(axis=1)
            index = np.where(inside, index, index + 1)
        return grid_values(index, self.step)


def order_statistic_rank(n: int, alpha: float) -> int:
    """``k = ceil((n+1)(1-alpha))``; raises when ``k > n`` (too few calibration units)."""
    risk_bound(alpha, n)  # raises InfeasibleAlphaError with the minimum n
    return math.ceil((n + 1) * (1.0 - alpha) - 1e-9)


def lambda_hat_from_stars(
    stars: np.ndarray, alpha: float, beta: float, lam_max: float = LAMBDA_MAX
) -> float:
    """lambda-hat by the CRC rule on the 0/1 losses ``1[lambda_i* > lam]``.

    Raises :class:`~.errors.InfeasibleAlphaError` for too few units and
    :class:`LambdaMaxError` when the ``k``-th smallest ``lambda_i*`` is infinite.
    """
    stars = np.asarray(stars, dtype=np.float64)
    n = stars.size
    k = order_statistic_rank(n, alpha)
    # A never-certified unit (key +inf) keeps contributing loss at every finite lambda.
    lam = StepRiskCurve.from_keys(stars, np.full(n, 1.0 / n), n).solve(alpha)
    if lam > lam_max:
        covered = int(np.count_nonzero(np.isfinite(stars)))
        raise LambdaMaxError(
            f"CONSIGN: lambda reached lambda_max = {lam_max:g} with only {covered} of {n} "
            f"calibration images covered, but k = {k} are needed: no meaningful set for "
            f"alpha = {alpha:g}, beta = {beta:g}. Relax alpha (larger) or beta (smaller). "
            "(Lambda has reached lambda_max, consider relaxing the parameters alpha and beta.)"
        )
    return float(lam)


def authors_lambda_hat(
    check: Check,
    n: int,
    alpha: float,
    step: float = LAMBDA_STEP,
    lam_max: float = LAMBDA_MAX,
) -> float:
    """The authors' loop (reference): lambda from ``step`` in steps of ``step``; re-check only
    uncovered units; stop at the first lambda with ``1 - covered/n <= alpha - (1-alpha)/n``."""
    if n < min_calibration_size(alpha):
        risk_bound(alpha, n)
    covered = np.zeros(n, dtype=bool)
    top = _grid_size(step, lam_max)
    for g in range(1, top + 1):
        lam = float(grid_values(g, step))
        todo = np.flatnonzero(~covered)
        if todo.size:
            covered[todo] = check(todo, np.full(todo.size, lam))
        if 1.0 - covered.sum() / n <= alpha - (1.0 - alpha) / n + 1e-12:
            return lam
    raise LambdaMaxError(
        f"Lambda has reached lambda_max = {lam_max:g}, consider relaxing the parameters "
        f"alpha = {alpha:g} and beta"
    )
