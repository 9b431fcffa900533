"""Straightforward grid CRC for the outer band, as MAPIE computes it (reference, slow).

Used as an independent check and as the baseline in ``benchmarks/bench_crc.py``; the product
uses the exact solver in :mod:`.crc`. Semantics (docs/methods.md §9): strict sets
``{p > lam}``, risk
``1 - recall`` per unit, ``r_plus = n/(n+1) mean + 1/(n+1)``; the answer is the last grid value
before the first one with ``r_plus >= alpha``.
"""

from __future__ import annotations

import numpy as np


def grid_outer_threshold(
    scores: np.ndarray, masks: np.ndarray, alpha: float, grid: np.ndarray
) -> float:
    """Grid CRC threshold (strict ``p > lam``) over stacked units with non-empty masks."""
    fg = np.asarray(masks) != 0
    n = scores.shape[0]
    sizes = fg.reshape(n, -1).sum(axis=1)
    flat_s = scores.reshape(n, -1)
    flat_fg = fg.reshape(n, -1)
    previous = grid[0]
    for lam in grid:
        covered = (flat_s > lam) & flat_fg
        risk = 1.0 - covered.sum(axis=1) / sizes
        r_plus = n / (n + 1) * risk.mean() + 1.0 / (n + 1)
        if r_plus >= alpha:
            return float(previous)
        previous = lam
    return float(previous)
