"""Metrics of bands against ground truth (docs/methods.md §7).

One implementation for tests, CLI and UI.

Per unit: TPR (coverage of the structure by the outer band), FNR, inner loss (false positives
of the inner band relative to the structure's size, capped at 1) and band sizes. Units with
empty ground truth have no defined TPR: they are excluded from coverage metrics and counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def tpr(outer: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of ground-truth voxels inside ``outer``; NaN if the ground truth is empty."""
    fg = np.asarray(truth) != 0
    m = int(fg.sum())
    return float(np.count_nonzero(np.asarray(outer)[fg]) / m) if m else float("nan")


def fnr(outer: np.ndarray, truth: np.ndarray) -> float:
    """``1 - TPR``; NaN if the ground truth is empty."""
    return 1.0 - tpr(outer, truth)


def inner_loss(inner: np.ndarray, truth: np.ndarray) -> float:
    """``min(1, |inner \\ Y| / |Y|)``; NaN if the ground truth is empty."""
    fg = np.asarray(truth) != 0
    m = int(fg.sum())
    if not m:
        return float("nan")
    return min(1.0, np.count_nonzero(np.asarray(inner) & ~fg) / m)


def marginal_coverage(tprs: Sequence[float]) -> float:
    """Mean TPR over units with non-empty ground truth (NaNs skipped)."""
    t = np.asarray(tprs, dtype=np.float64)
    t = t[~np.isnan(t)]
    return float(t.mean()) if t.size else float("nan")


def coverage_gap(tprs: Sequence[float], alpha: float) -> float:
    """Mean absolute deviation ``mean_i |TPR_i - (1 - alpha)|`` (not ``|mean - (1-alpha)|``)."""
    t = np.asarray(tprs, dtype=np.float64)
    t = t[~np.isnan(t)]
    return float(np.abs(t - (1.0 - alpha)).mean()) if t.size else float("nan")


def voxel_volume(spacing: Sequence[float] | None) -> float | None:
    """Physical size of one voxel (product of spacings: mm^2 in 2D, mm^3 in 3D), or None."""
    return None if spacing is None else float(np.prod(np.asarray(spacing, dtype=np.float64)))


def band_sizes(
    inner: np.ndarray, outer: np.ndarray, spacing: Sequence[float] | None = None
) -> dict[str, float]:
    """Voxel counts of the inner band, outer band and ring; physical sizes when ``spacing``
    (one value per axis, in mm) is given: ``*_mm2`` / ``*_mm3`` in mm² (2D) or mm³ (3D) and,
    for 3D, ``*_ml`` in mL."""
    counts = {
        "inner_voxels": int(np.count_nonzero(inner)),
        "outer_voxels": int(np.count_nonzero(outer)),
    }
    counts["ring_voxels"] = counts["outer_voxels"] - int(np.count_nonzero(inner & outer))
    vol = voxel_volume(spacing)
    sizes: dict[str, float] = dict(counts)
    if vol is not None:
        for key, c in counts.items():
            base = key.removesuffix("_voxels")
            sizes[f"{base}_mm{len(spacing)}"] = c * vol
            if len(spacing) == 3:
                sizes[f"{base}_ml"] = c * vol / 1000.0
    return sizes


def unit_metrics(inner: np.ndarray, outer: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """TPR, FNR, inner loss and voxel counts of one unit."""
    t = tpr(outer, truth)
    return {
        "tpr": t,
        "fnr": 1.0 - t,
        "inner_loss": inner_loss(inner, truth),
        **band_sizes(inner, outer),
    }
