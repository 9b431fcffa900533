"""Step-function risks of threshold sets ``{p >= tau}``: outer FNR and inner false positives.

Both losses are bounded by B = 1 and are turned into :class:`StepRiskCurve` objects, so CRC,
AT and COAT share one exact solver. ``offsets`` shift each unit's threshold: CRC uses 0, the
adaptive methods use the per-unit predicted threshold (docs/methods.md §2.2, 2.3, 4.4, 4.5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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

    A unit with empty ground truth (a healthy scan) has loss ``1[C non-empty]``: one key, its
    highest score, with weight ``1 / n``.

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
        if m == 0:  # a healthy unit: loss 1 iff its inner set is non-empty (docs/guarantees.md)
            keys.append(bg.max(keepdims=True) - o if bg.size else bg)
            weights.append(np.full(min(bg.size, 1), 1.0 / n))
            continue
        if bg.size > m:
            bg = np.partition(bg, bg.size - m)[bg.size - m :]
        keys.append(bg - o)
        weights.append(np.full(bg.size, 1.0 / (n * m)))
    return StepRiskCurve.from_keys(np.concatenate(keys), np.concatenate(weights), n)


def score_dtype(scores: Sequence[np.ndarray] | np.ndarray) -> np.dtype:
    """The floating dtype that holds every score map of ``scores`` exactly (float64 if none)."""
    dtypes = [np.asarray(s).dtype for s in scores]
    dtypes = [d for d in dtypes if np.issubdtype(d, np.floating)]
    return np.dtype(np.result_type(*dtypes)) if dtypes else np.dtype(np.float64)


def round_up_to(tau: np.ndarray | float, dtype: np.dtype | type) -> np.ndarray:
    """The smallest value of ``dtype`` that is ``>= tau``, returned as float64.

    For scores ``s`` of that dtype, ``s >= tau`` (exact, in the reals) iff
    ``s >= round_up_to(tau, dtype)``, and the rounded threshold is representable in the
    scores' dtype, so the comparison gives the same answer in any precision. This matters
    under NumPy 2: a float32 array compared with a Python float compares in float32, which
    rounds ``nextafter(v, inf)`` (float64) back to ``v`` and silently includes ``v``.
    """
    t = np.asarray(tau, dtype=np.float64)
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating) or np.finfo(dtype).bits >= 64:
        return t
    with np.errstate(over="ignore"):
        r = t.astype(dtype)
        r = np.where(r.astype(np.float64) < t, np.nextafter(r, dtype.type(np.inf)), r)
    return r.astype(np.float64)


def threshold_mask(score: np.ndarray, tau: float | np.ndarray) -> np.ndarray:
    """``score >= tau`` evaluated exactly, whatever the dtypes of ``score`` and ``tau``.

    Every mask of a threshold set goes through here (or through the float64 comparison of
    :meth:`Bands.from_thresholds`): the threshold is rounded up to the score's dtype first,
    so a float32 map never includes a level that the float64 threshold excludes.
    """
    score = np.asarray(score)
    dtype = score.dtype if np.issubdtype(score.dtype, np.floating) else np.dtype(np.float64)
    return score >= round_up_to(tau, dtype).astype(dtype)


def _float_dtype(dtype: np.dtype | type) -> np.dtype:
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating) or dtype.itemsize > 8:
        return np.dtype(np.float64)
    return dtype


def _first_in_set(
    member: Callable[[np.ndarray], np.ndarray],
    guess: np.ndarray,
    top: float,
    dtype: np.dtype | type,
) -> np.ndarray:
    """Smallest value ``q`` of ``dtype`` in ``[0, top]`` with ``member(q)``, as float64.

    ``member`` (evaluated in float64, elementwise) must be monotone, False-to-True in ``q``;
    ``top`` counts as a member. ``guess`` is the closed form, right unless rounding moved the
    boundary: it is checked, and only then is the boundary bisected on the bit patterns
    (non-negative floats order like their integer views; at most 64 halvings).
    """
    dtype = _float_dtype(dtype)
    guess = np.asarray(guess, dtype=np.float64)
    top_d = dtype.type(top)

    def inside(q: np.ndarray) -> np.ndarray:
        return member(q.astype(np.float64)) | (q >= top_d)

    with np.errstate(over="ignore", invalid="ignore"):
        g = np.clip(round_up_to(np.nan_to_num(guess, nan=top), dtype), 0.0, top).astype(dtype)
    below = np.nextafter(g, dtype.type(-1))
    if np.all(inside(g) & ((g <= 0) | ~inside(np.maximum(below, dtype.type(0))))):
        return g.astype(np.float64)
    itype = np.dtype(f"i{dtype.itemsize}")
    lo = np.full(g.shape, -1, dtype=itype)  # virtual non-member just below +0
    hi = np.full(g.shape, np.asarray(top_d, dtype=dtype).view(itype), dtype=itype)
    while np.any(hi - lo > 1):
        mid = lo + (hi - lo) // 2
        ok = inside(mid.view(dtype))
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return hi.view(dtype).astype(np.float64)


def outer_thresholds(
    offsets: np.ndarray | float, shift: float, dtype: np.dtype | type = np.float64
) -> np.ndarray:
    """Outer thresholds ``clip(offset - shift, 0, 1)`` for a calibrated shift (``-inf``: 1).

    Exact with respect to the keys of :func:`fnr_curve`: a unit's threshold is the smallest
    value of ``dtype`` (the calibration scores' dtype) in [0, 1] with
    ``fl(offset - p) <= shift``, i.e. its calibrated outer set, so rounding in ``offset - p``
    can never move a voxel across the boundary. With offset 0 it is the GT score CRC selects.
    """
    off = np.asarray(offsets, dtype=np.float64)

    def member(q: np.ndarray) -> np.ndarray:
        return off - q <= shift

    return _first_in_set(member, off - shift, 1.0, dtype)


def inner_thresholds(
    offsets: np.ndarray | float, infimum: float, dtype: np.dtype | type = np.float64
) -> np.ndarray:
    """Raw inner thresholds from the calibrated infimum ``x*`` of the inner shift.

    The valid inner sets are ``{p - offset > x*}`` (the infimum is not attained with ``>=``),
    i.e. thresholds just above ``offset + x*``: ``nextafter(offset + x*, +inf)`` in ``dtype``
    (the calibration scores' dtype), or 0 where every set passes (``x* = -inf``). Above 1 the
    inner band is empty. Exact with respect to the keys of :func:`inner_fp_curve`: the
    smallest ``p >= 0`` of ``dtype`` with ``fl(p - offset) > x*``. For float32 scores and
    offset 0 this is ``nextafter(v*, inf)`` in float32, CRC's threshold.
    """
    off = np.asarray(offsets, dtype=np.float64)

    def member(q: np.ndarray) -> np.ndarray:
        return q - off > infimum

    with np.errstate(invalid="ignore"):
        guess = np.nextafter(off + infimum, np.inf)
    # Keys p - offset lie in [-1, 1], so x* <= 1 and p = 4 is always in the set.
    return _first_in_set(member, guess, 4.0, dtype)


def inner_threshold(curve: StepRiskCurve, alpha: float) -> float:
    """Infimum ``x*`` of the feasible inner shifts (``-inf`` when every set passes).

    It is the smallest key whose strict tail meets the CRC bound; turn it into thresholds with
    :func:`inner_thresholds`.
    """
    return curve.solve(alpha)
