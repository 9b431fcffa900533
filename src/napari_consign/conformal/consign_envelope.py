"""Per-pixel summaries and samples of a CONSIGN box (docs/methods.md §5.5).

The CONSIGN set is implicit: every ``Y`` beta-equal to some ``P(mu + U_K c)`` with ``c`` in the
box. The masks here are the **CONSIGN envelope**, a visual summary, *not* a conformal set: they
drop the joint spatial structure and the beta tolerance.

* binary: ``outer`` = union and ``inner`` = intersection of the foreground of ``P(mu + U_K c)``
  over the box, in closed form from ``delta_p + w_p . m +- sum_k |w_pk| r_k > 0``;
* multiclass: the generic outer band is "some non-background label may win", the inner band
  "a non-background label must win"; :func:`label_envelopes` gives per-label "may be"/"must be"
  masks. "Must" and "some label may win" are closed forms (a box extremum of linear
  functions); "label l may win" is the small LP ``max_c min_j (sigma_l - sigma_j)(c)``, solved
  exactly per pixel through its dual ``min_theta`` over the simplex, whose minimum lies on a
  vertex of the arrangement enumerated in :func:`_max_min_margin`.
"""

from __future__ import annotations

import itertools

import numpy as np

from .consign_decomposition import Decomposition

_SAMPLE_CHUNK_ELEMENTS = 1 << 23  # float64 scores per sampling pass


def _differences(d: Decomposition, label: int) -> tuple[np.ndarray, np.ndarray]:
    """``sigma_j - sigma_label`` for every label ``j``: offsets ``(L, P)``, slopes ``(L, K, P)``."""
    mean = d.mean.astype(np.float64).reshape(d.n_classes, -1)
    comps = d.components.astype(np.float64).reshape(d.k, d.n_classes, -1)
    comps = np.swapaxes(comps, 0, 1)  # (L, K, P)
    return mean - mean[label], comps - comps[label]


def _box_extremes(
    offset: np.ndarray, slope: np.ndarray, m: np.ndarray, r: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum over the box of ``offset + slope . c`` (slope ``(..., K, P)``)."""
    centre = offset + np.einsum("...kp,k->...p", slope, m)
    spread = np.einsum("...kp,k->...p", np.abs(slope), r)
    return centre - spread, centre + spread


def binary_envelope(
    d: Decomposition, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(inner, outer)`` boolean maps of a two-class unit over the box ``[lower, upper]``."""
    m, r = (upper + lower) / 2.0, (upper - lower) / 2.0
    offset, slope = _differences(d, 0)
    lo, hi = _box_extremes(offset[1], slope[1], m, r)
    return (lo > 0).reshape(d.spatial), (hi > 0).reshape(d.spatial)


def envelope(d: Decomposition, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(inner, outer)`` foreground envelope for any number of classes.

    Outer: some non-background label can beat background somewhere in the box. Inner:
    background never wins (ties go to background) anywhere in the box.
    """
    if d.n_classes == 2:
        return binary_envelope(d, lower, upper)
    m, r = (upper + lower) / 2.0, (upper - lower) / 2.0
    offset, slope = _differences(d, 0)
    _, hi = _box_extremes(offset[1:], slope[1:], m, r)
    outer = (hi > 0).any(axis=0)
    # background may win iff max_c min_j (sigma_0 - sigma_j) >= 0
    background_may = _max_min_margin(-offset[1:], -slope[1:], m, r) >= 0
    return (~background_may).reshape(d.spatial), outer.reshape(d.spatial)


def label_envelopes(
    d: Decomposition, lower: np.ndarray, upper: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-label ``(may, must)`` masks ``(L, *spatial)`` over the box.

    ``must[l]``: ``l`` wins at every ``c`` of the box (it beats lower labels strictly and higher
    labels or ties). ``may[l]``: ``l`` wins at some ``c`` (decided by the LP margin, exact up to
    ties on a measure-zero boundary; for background ties count as wins).
    """
    m, r = (upper + lower) / 2.0, (upper - lower) / 2.0
    may = np.zeros((d.n_classes, int(np.prod(d.spatial))), dtype=bool)
    must = np.zeros_like(may)
    for label in range(d.n_classes):
        offset, slope = _differences(d, label)
        others = [j for j in range(d.n_classes) if j != label]
        gap_off, gap_slope = -offset[others], -slope[others]  # sigma_label - sigma_j
        gap_min, _ = _box_extremes(gap_off, gap_slope, m, r)
        strict = np.array([j < label for j in others])[:, None]
        must[label] = np.where(strict, gap_min > 0, gap_min >= 0).all(axis=0)
        margin = _max_min_margin(gap_off, gap_slope, m, r)
        may[label] = margin >= 0 if label == 0 else margin > 0
    shape = (d.n_classes, *d.spatial)
    return may.reshape(shape), must.reshape(shape)


def _max_min_margin(offset: np.ndarray, slope: np.ndarray, m: np.ndarray, r: np.ndarray):
    """``max_{c in box} min_j (offset_j + slope_j . c)`` per pixel, exactly.

    ``offset`` is ``(M, P)``, ``slope`` ``(M, K, P)``. By LP duality the value is
    ``min_{theta in simplex} h(theta)``, ``h = theta.offset + g.m + |g|.r``, ``g = theta^T slope``;
    ``h`` is convex and piecewise linear, so its minimum over the simplex lies on a vertex of the
    arrangement of the facets ``theta_j = 0`` and the kinks ``g_k = 0`` (``r_k > 0``): all
    ``M - 1``-subsets of these hyperplanes are solved with ``sum theta = 1``.
    """
    n_m, n_p = offset.shape
    if n_m == 1:
        return (
            offset[0]
            + np.einsum("kp,k->p", slope[0], m)
            + np.einsum("kp,k->p", np.abs(slope[0]), r)
        )
    kinks = [k for k in range(slope.shape[1]) if r[k] > 0]
    # hyperplane normals per pixel: (H, P, M)
    normals = np.concatenate(
        [
            np.broadcast_to(np.eye(n_m)[:, None, :], (n_m, n_p, n_m)),
            np.moveaxis(slope[:, kinks, :], (0, 1), (2, 0)),
        ],
        axis=0,
    )
    best = np.full(n_p, np.inf)
    ones = np.ones((n_p, 1, n_m))
    rhs = np.zeros(n_m)
    rhs[0] = 1.0
    for subset in itertools.combinations(range(normals.shape[0]), n_m - 1):
        a = np.concatenate([ones, np.moveaxis(normals[list(subset)], 0, 1)], axis=1)  # (P, M, M)
        det = np.linalg.det(a)
        scale = np.abs(a).max(axis=(1, 2)) ** n_m
        ok = np.abs(det) > 1e-12 * np.maximum(scale, 1e-300)
        a[~ok] = np.eye(n_m)
        theta = np.linalg.solve(a, np.broadcast_to(rhs, (n_p, n_m))[..., None])[..., 0]
        ok &= (theta >= -1e-12).all(axis=1)
        theta = np.clip(theta, 0.0, None)
        g = np.einsum("pj,jkp->pk", theta, slope)
        h = np.einsum("pj,jp->p", theta, offset) + g @ m + np.abs(g) @ r
        best = np.where(ok, np.minimum(best, h), best)
    return best


def sample_labels(
    d: Decomposition,
    lower: np.ndarray,
    upper: np.ndarray,
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``n`` segmentations ``P(mu + U_K c)``, ``c`` uniform in the box, as ``(n, *spatial)``.

    Generated in chunks, so memory does not grow with ``n``.
    """
    dtype = np.uint8 if d.n_classes <= 256 else np.int32
    out = np.empty((n, *d.spatial), dtype=dtype)
    chunk = max(1, _SAMPLE_CHUNK_ELEMENTS // d.mean.size)
    for lo in range(0, n, chunk):
        count = min(chunk, n - lo)
        c = lower + rng.uniform(size=(count, d.k)) * (upper - lower)
        out[lo : lo + count] = d.labels(c)
    return out
