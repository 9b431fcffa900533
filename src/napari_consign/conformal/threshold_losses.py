"""Step-function risks of threshold sets ``{p >= tau}``: outer FNR and inner false positives.

Both losses are bounded by B = 1 and are turned into :class:`StepRiskCurve` objects, so CRC,
AT and COAT share one exact solver. ``offsets`` shift each unit's threshold: CRC uses 0, the
adaptive methods use the per-unit predicted threshold (METHODS.md 2.2, 2.3, 4.4, 4.5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .crc_rule import StepRiskCurve


def _per_unit_offsets(offsets: Sequence[float] | None, n: int) -> np.ndarray:
    return np.zeros(n) if offsets is None else np.asarray(offsets, dtype=np.float64)


def fnr_curve(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], offsets: Sequence[float] | None = None
) -> StepRiskCurve:
    """Outer-band risk: mean FNR of the sets ``{p >= clip(offset_i - lam, 0, 1)}``.

    A GT voxel with ``p < 1`` is covered iff ``lam >= offset_i - p`` (its key); one with
    ``p >= 1`` is covered for every ``lam`` (key ``-inf``, since thresholds never exceed 1).
    Each carries weight ``1 / (n |Y_i|)``. ``pairs`` must hold non-empty masks only.
    CRC is the case ``offset = 0``. With float32 scores and offsets the keys are exact in
    float64, so ``offset - (offset - p) == p`` and the calibrated sets are reproduced exactly.
    """
    n = len(pairs)
    off = _per_unit_offsets(offsets, n)
    keys, weights = [], []
    for (score, fg), o in zip(pairs, off, strict=True):
        gt_scores = score[fg].astype(np.float64)
        keys.append(np.where(gt_scores >= 1.0, -np.inf, o - gt_scores))
        weights.append(np.full(gt_scores.size, 1.0 / (n * gt_scores.size)))
    return StepRiskCurve.from_keys(np.concatenate(keys), np.concatenate(weights), n)


def inner_fp_curve(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], offsets: Sequence[float] | None = None
) -> StepRiskCurve:
    """Inner-band risk: mean of ``min(1, |C \\ Y_i| / |Y_i|)``, keys ``p - offset_i``.

    A background voxel of unit ``i`` is in the inner set ``{p >= offset_i + u}`` iff
    ``u <= p - offset_i``. The cap at 1 is exact when only the ``|Y_i|`` highest-scoring
    background voxels of each unit are kept, each with weight ``1 / (n |Y_i|)``: the loss then
    becomes a weighted count, ``R(v) = sum w 1[key > v]`` for a set ``{key > v}``.
    """
    n = len(pairs)
    off = _per_unit_offsets(offsets, n)
    keys, weights = [], []
    for (score, fg), o in zip(pairs, off, strict=True):
        m = int(fg.sum())
        bg = score[~fg].astype(np.float64)
        if bg.size > m:
            bg = np.partition(bg, bg.size - m)[bg.size - m :]
        keys.append(bg - o)
        weights.append(np.full(bg.size, 1.0 / (n * m)))
    return StepRiskCurve.from_keys(np.concatenate(keys), np.concatenate(weights), n)


def outer_thresholds(offsets: np.ndarray | float, shift: float) -> np.ndarray:
    """Outer thresholds ``clip(offset - shift, 0, 1)`` for a calibrated shift (``-inf``: 1)."""
    return np.clip(np.asarray(offsets, dtype=np.float64) - shift, 0.0, 1.0)


def inner_thresholds(offsets: np.ndarray | float, infimum: float) -> np.ndarray:
    """Raw inner thresholds from the calibrated infimum ``x*`` of the inner shift.

    The valid inner sets are ``{p - offset > x*}`` (the infimum is not attained with ``>=``),
    i.e. thresholds just above ``offset + x*``: ``nextafter(offset + x*, +inf)``, or 0 where
    that is negative (``-inf``: every set passes). Above 1 the inner band is empty. With
    float32 scores and offsets, ``offset + x*`` is exact, so offset 0 gives CRC's threshold.
    """
    t = np.asarray(offsets, dtype=np.float64) + infimum
    return np.where(t < 0.0, 0.0, np.nextafter(t, np.inf))


def inner_threshold(curve: StepRiskCurve, alpha: float) -> float:
    """Infimum ``x*`` of the feasible inner shifts (``-inf`` when every set passes).

    It is the smallest key whose strict tail meets the CRC bound; turn it into thresholds with
    :func:`inner_thresholds`.
    """
    return curve.solve(alpha)
