"""Beta-equality and the sampled set metrics of CONSIGN and pixel-wise APS.

See docs/methods.md §5.2 and §7.

* :func:`beta_scores`: macro recall over the labels present in the ground truth (background
  included), for one or many predicted label maps; ``Y =_beta Y_hat`` iff the score is strictly
  above ``beta`` (:func:`beta_equal`).
* :func:`sampled_coverage` (sEC): fraction of units where at least one of ``N`` sampled
  segmentations is beta-equal to the ground truth, a sampled lower estimate of set coverage.
* :func:`chao1`: Chao1 estimate of the number of distinct segmentations in a set, from ``N``
  samples, on the uncertain pixels; lower is better.
* :func:`mean_pearson`: mean of the ``N x N`` sample-by-sample correlation matrix over the
  uncertain pixels (diagonal included, NaN set to 0); higher means a more structured set.

Scores are computed from integer hit counts per label, so the strict comparison with ``beta``
is exact up to :data:`SCORE_TOLERANCE`: a score equal to ``beta`` as a fraction never passes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ConformalInputError

#: A score passes only if it exceeds ``beta`` by more than this (float rounding of the mean of
#: a few per-label fractions is ~1e-16; legitimate margins are far larger).
SCORE_TOLERANCE = 1e-12

#: The mean Pearson correlation is computed only for at most this many samples (docs/methods.md §7).
MAX_CORRELATION_SAMPLES = 1000


def check_beta(beta: float) -> float:
    """Return ``beta`` as a float if it lies strictly inside (0, 1), else raise."""
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise ConformalInputError(f"beta must be a number in (0, 1), got {beta!r}") from None
    if not 0.0 < b < 1.0:
        raise ConformalInputError(
            f"beta must lie strictly between 0 and 1 (the accuracy level of beta-equality, "
            f"e.g. 0.9), got {b}"
        )
    return b


def beta_equal(score: float | np.ndarray, beta: float) -> np.ndarray | bool:
    """``score > beta`` (strict), robust to float rounding of the score."""
    return np.asarray(score) > beta + SCORE_TOLERANCE


def beta_scores(truth: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Macro recall over the ground-truth labels of each prediction.

    ``truth`` is one label map; ``predictions`` is one map of the same shape or a stack
    ``(N, *truth.shape)``. Returns a float (one map) or an array of ``N`` scores.
    """
    truth = np.asarray(truth)
    preds = np.asarray(predictions)
    single = preds.shape == truth.shape
    truth = truth.reshape(-1)
    preds = preds.reshape(1 if single else preds.shape[0], -1)
    if preds.shape[1] != truth.size:
        raise ConformalInputError(
            f"predictions have {preds.shape[1]} pixels but the ground truth has {truth.size}"
        )
    labels, counts = np.unique(truth, return_counts=True)
    total = np.zeros(preds.shape[0], dtype=np.float64)
    for label, count in zip(labels, counts, strict=True):
        where = truth == label
        hits = np.count_nonzero(preds[:, where] == label, axis=1)
        total += hits / count
    scores = total / labels.size
    return float(scores[0]) if single else scores


def sampled_coverage(
    truths: Sequence[np.ndarray], samples: Sequence[np.ndarray], beta: float
) -> float:
    """sEC: fraction of units where at least one sample is beta-equal to the ground truth.

    ``samples[i]`` is a stack ``(N, *truths[i].shape)`` of sampled segmentations of unit ``i``.
    """
    beta = check_beta(beta)
    if len(truths) != len(samples) or not len(truths):
        raise ConformalInputError("sEC needs one sample stack per unit and at least one unit")
    hit = [
        bool(np.any(beta_equal(beta_scores(y, s), beta)))
        for y, s in zip(truths, samples, strict=True)
    ]
    return float(np.mean(hit))


def uncertain_pixels(samples: np.ndarray) -> np.ndarray:
    """Pixels whose label varies across the samples ``(N, ...)`` (CONSIGN's definition)."""
    samples = np.asarray(samples)
    return np.any(samples != samples[:1], axis=0)


def _rows(samples: np.ndarray, uncertain: np.ndarray | None) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.ndim < 2:
        raise ConformalInputError("samples must be a stack (N, ...) of label maps")
    mask = uncertain_pixels(samples) if uncertain is None else np.asarray(uncertain, bool)
    if mask.shape != samples.shape[1:]:
        raise ConformalInputError("the uncertain-pixel mask must have the shape of one sample")
    return samples.reshape(samples.shape[0], -1)[:, mask.reshape(-1)]


def chao1(samples: np.ndarray, uncertain: np.ndarray | None = None) -> float:
    """Chao1 estimate ``S_obs + f1 (f1 - 1) / (2 (f2 + 1))`` of the number of distinct maps.

    Computed on the ``uncertain`` pixels (default: pixels whose label varies across the
    samples; the pixel-wise baseline passes "set holds more than one label"). ``S_obs`` is the
    number of distinct maps, ``f1``/``f2`` the number of maps seen exactly once/twice. Returns
    1 when no pixel is uncertain.
    """
    rows = _rows(samples, uncertain)
    if rows.shape[1] == 0:
        return 1.0
    rows = np.ascontiguousarray(rows)
    keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, counts = np.unique(keys, return_counts=True)
    f1 = int(np.count_nonzero(counts == 1))
    f2 = int(np.count_nonzero(counts == 2))
    return float(counts.size + f1 * (f1 - 1) / (2.0 * (f2 + 1)))


def mean_pearson(samples: np.ndarray, uncertain: np.ndarray | None = None) -> float:
    """Mean of the sample-by-sample Pearson correlation matrix over the uncertain pixels.

    Diagonal included, NaN (constant samples) set to 0 (docs/methods.md §7). Returns NaN for more
    than :data:`MAX_CORRELATION_SAMPLES` samples, and 1 when no pixel is uncertain (all
    samples identical) [project decision].
    """
    rows = _rows(samples, uncertain)
    if rows.shape[0] > MAX_CORRELATION_SAMPLES:
        return float("nan")
    if rows.shape[1] == 0:
        return 1.0
    x = rows.astype(np.float64)
    x -= x.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (x @ x.T) / np.outer(norm, norm)
    return float(np.nan_to_num(corr, nan=0.0).mean())
