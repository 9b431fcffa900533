"""AT's oracle threshold: the largest tau whose set ``{p >= tau}`` keeps TPR >= 1 - alpha.

Exact on the step function (docs/methods.md §3.1): with the GT scores sorted descending
``s_(1) >= ... >= s_(m)`` and ``k0 = ceil((1 - alpha) m)``, the answer is ``s_(k0)``.
"""

from __future__ import annotations

import numpy as np


def sorted_gt_scores(score: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """GT scores of one unit in descending order (float64)."""
    return -np.sort(-np.asarray(score, dtype=np.float64)[np.asarray(mask) != 0])


def oracle_threshold(descending_gt: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """Largest tau with TPR(tau) >= 1 - alpha, for one unit and one or many alphas."""
    m = descending_gt.size
    if m == 0:
        raise ValueError("the oracle threshold needs a non-empty ground truth")
    k0 = np.ceil((1.0 - np.asarray(alpha, dtype=np.float64)) * m - 1e-9).astype(int)
    return descending_gt[np.clip(k0, 1, m) - 1]
