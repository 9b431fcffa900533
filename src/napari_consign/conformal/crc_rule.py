"""The conformal risk control (CRC) rule, written once for every threshold-type method.

Angelopoulos et al., *Conformal Risk Control* (ICLR 2024): with losses ``L_i(lam)`` in ``[0, B]``,
non-increasing in ``lam``, the choice

    lam_hat = inf{lam : n/(n+1) * R_n(lam) + B/(n+1) <= alpha}

guarantees ``E[L_{n+1}(lam_hat)] <= alpha`` for exchangeable calibration and test units.
Equivalently ``R_n(lam) <= r*`` with ``r* = ((n+1) alpha - B) / n``.

All project losses (outer FNR, inner false positives, the COAT/AT shifts, CONSIGN's 0/1 loss)
are, or reduce exactly to, a *weighted count of keys above lam*:

    R_n(lam) = sum_j w_j * 1[key_j > lam]

(a key is the smallest ``lam`` at which an item stops contributing loss). :class:`StepRiskCurve`
holds that step function once, sorted, so the CRC threshold for any alpha is a binary search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import ConformalInputError, InfeasibleAlphaError

#: Absolute tolerance when comparing accumulated risks with the bound ``r*``.
RISK_TOLERANCE = 1e-10


def check_alpha(alpha: float) -> float:
    """Return ``alpha`` as a float if it lies strictly inside (0, 1), else raise."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ConformalInputError(f"alpha must be a number in (0, 1), got {alpha!r}") from None
    if not 0.0 < a < 1.0 or math.isnan(a):
        raise ConformalInputError(
            f"alpha must lie strictly between 0 and 1 (e.g. 0.1 for a 90% guarantee), got {a}"
        )
    return a


def min_calibration_size(alpha: float, bound: float = 1.0) -> int:
    """Smallest number of usable calibration units for which CRC at ``alpha`` is feasible.

    Feasible iff ``r* >= 0`` iff ``n >= B/alpha - 1``.
    """
    return max(1, math.ceil(bound / check_alpha(alpha) - 1.0 - 1e-9))


def min_feasible_alpha(n: int, bound: float = 1.0) -> float:
    """Smallest alpha that ``n`` usable calibration units support: ``B / (n + 1)``."""
    return bound / (n + 1)


def risk_bound(alpha: float, n: int, bound: float = 1.0) -> float:
    """The CRC bound ``r* = ((n+1) alpha - B) / n`` on the empirical risk; raises if negative."""
    a = check_alpha(alpha)
    if n < 1:
        raise ConformalInputError(
            "no usable calibration units: every ground-truth mask is empty. "
            "Calibrate on images that contain the structure."
        )
    r = ((n + 1) * a - bound) / n
    if r < -RISK_TOLERANCE:
        raise InfeasibleAlphaError(
            f"alpha = {a:g} is too small for {n} usable calibration units: CRC needs at least "
            f"{min_calibration_size(a, bound)} (n >= (1 - alpha)/alpha). Use alpha >= "
            f"{min_feasible_alpha(n, bound):.4g} or add calibration images."
        )
    return max(r, 0.0)


@dataclass(frozen=True)
class StepRiskCurve:
    """The empirical risk ``R(lam) = sum_j w_j 1[key_j > lam]`` as a sorted step function.

    ``keys`` are the distinct keys (``+inf`` included) in ascending order and
    ``tail[k] = R(keys[k])`` (non-increasing, last entry 0); ``total = R(-inf)``. Items keyed
    ``-inf`` never contribute and are left out; items keyed ``+inf`` contribute at every
    finite ``lam``, so a ``solve`` result of ``+inf`` means no finite ``lam`` meets the bound.
    ``n`` is the number of calibration units the weights refer to.
    """

    keys: np.ndarray
    tail: np.ndarray
    total: float
    n: int

    @classmethod
    def from_keys(cls, keys: np.ndarray, weights: np.ndarray, n: int) -> StepRiskCurve:
        """Build the curve from per-item keys and non-negative weights in O(N log N)."""
        keys = np.asarray(keys, dtype=np.float64).ravel()
        weights = np.asarray(weights, dtype=np.float64).ravel()
        if keys.shape != weights.shape:
            raise ConformalInputError("keys and weights must have the same length")
        if np.any(np.isnan(keys)):
            raise ConformalInputError("risk keys contain NaN")
        contributes = keys != -np.inf  # -inf: never a loss; +inf: a loss at every lam
        keys, weights = keys[contributes], weights[contributes]
        order = np.argsort(keys)  # ties are merged below, so stability is not needed
        keys, weights = keys[order], weights[order]
        # suffix[i] = sum of weights at sorted positions >= i (summed from the small end of
        # the tail, which keeps the rounding error of small tails small).
        suffix = np.concatenate([np.cumsum(weights[::-1])[::-1], [0.0]])
        last = np.flatnonzero(np.append(keys[1:] != keys[:-1], keys.size > 0))  # ends of runs
        distinct, tail = keys[last], suffix[last + 1]
        return cls(keys=distinct, tail=tail, total=float(suffix[0]), n=int(n))

    @cached_property
    def _ascending_tail(self) -> np.ndarray:
        return np.ascontiguousarray(self.tail[::-1])

    def risk(self, lam: float | np.ndarray) -> np.ndarray:
        """Evaluate ``R(lam)`` (vectorised)."""
        lam = np.asarray(lam, dtype=np.float64)
        idx = np.searchsorted(self.keys, lam, side="right")
        padded = np.concatenate([[self.total], self.tail])
        return padded[idx]

    def solve(self, alpha: float, bound: float = 1.0) -> float:
        """CRC solution: the smallest ``lam`` with ``R(lam) <= r*``.

        Returns ``-inf`` when no item contributes loss at the bound (``total <= r*``); otherwise
        the smallest key whose tail is within the bound. Raises :class:`InfeasibleAlphaError`
        when ``alpha`` is too small for ``n``.
        """
        r = risk_bound(alpha, self.n, bound) + RISK_TOLERANCE
        if self.total <= r:
            return -math.inf
        k = len(self.tail) - int(np.searchsorted(self._ascending_tail, r, side="right"))
        return float(self.keys[k])
