"""Checks of a stored method state (a calibration bundle's), shared by the methods.

Each check raises :class:`StateError` with one line naming the field; the bundle reader
prefixes the file name (:func:`napari_consign.calibration.validate_bundle`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .crc_rule import min_feasible_alpha
from .errors import ConformalInputError


class StateError(ConformalInputError):
    """A stored method state with a field out of range or inconsistent."""


def numbers(
    values: Any, what: str, lo: float = -math.inf, hi: float = math.inf, allow_inf: bool = False
) -> np.ndarray:
    """``values`` as a float array, each in [lo, hi] (or +-inf when ``allow_inf``)."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise StateError(f"{what} must be numbers") from None
    if np.isnan(a).any():
        raise StateError(f"{what} holds NaN")
    finite = np.isfinite(a)
    if not allow_inf and not finite.all():
        raise StateError(f"{what} holds infinite values")
    if ((a[finite] < lo) | (a[finite] > hi)).any():
        raise StateError(f"{what} must lie in [{lo:g}, {hi:g}]")
    return a


def count(state: dict, key: str, least: int) -> int:
    """``state[key]`` as an integer >= ``least``."""
    v = state.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < least:
        raise StateError(f"{key} must be an integer >= {least}, not {v!r}")
    return v


def alpha_rows(rows: Any, width: int, what: str, n_used: int) -> np.ndarray:
    """A non-empty table of ``[alpha, ...]`` rows: alphas increasing, feasible for n_used."""
    if not isinstance(rows, list) or not rows:
        raise StateError(f"the {what} table is empty; recalibrate")
    if any(not isinstance(r, list) or len(r) != width for r in rows):
        raise StateError(f"every {what} row must hold {width} numbers")
    table = numbers(rows, f"the {what} table", allow_inf=True)
    check_alphas(table[:, 0], what, n_used)
    return table


def check_alphas(alphas: np.ndarray, what: str, n_used: int) -> None:
    """Stored alphas in (0, 1), increasing, and feasible for ``n_used`` calibration units."""
    if not np.isfinite(alphas).all() or (alphas <= 0).any() or (alphas >= 1).any():
        raise StateError(f"the {what} alphas must lie in (0, 1)")
    if (np.diff(alphas) <= 0).any():
        raise StateError(f"the {what} alphas must increase")
    lowest = min_feasible_alpha(n_used)
    if alphas.size and alphas.min() < lowest - 1e-12:
        raise StateError(
            f"n_used = {n_used} supports alpha >= {lowest:.4g}, but the {what} table "
            f"starts at {alphas.min():g}; the bundle is inconsistent (edited?): recalibrate"
        )


def monotone(values: np.ndarray, rising: bool, what: str) -> None:
    """``values`` grow (``rising``) or shrink with alpha, up to rounding."""
    step = np.diff(values)
    if (step < -1e-9 if rising else step > 1e-9).any():
        direction = "grow" if rising else "shrink"
        raise StateError(f"{what} must {direction} with alpha (inner and outer swapped or edited?)")


def lambda_tables(state: dict, n_used: int) -> None:
    """beta in (0, 1] and every ``lambda_stars`` table non-negative with ``n_used`` entries."""
    numbers(state.get("beta"), "beta", 1e-12, 1.0)
    stars = state.get("lambda_stars")
    for t in stars.values() if isinstance(stars, dict) else [stars]:
        values = numbers(t, "lambda_stars", 0.0, allow_inf=True)
        if values.ndim != 1 or values.size != n_used:
            raise StateError(
                f"lambda_stars holds {values.size} values but n_used is {n_used}; "
                "the bundle is inconsistent (edited?): recalibrate"
            )
