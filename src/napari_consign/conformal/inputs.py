"""Validation of score maps and ground-truth masks handed to the conformal core.

A *unit* is one calibration or test item (a 2D image or a 3D volume). Collections of units are
either a stacked array ``(n, ...)`` or a sequence of arrays of possibly different shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ConformalInputError

Units = np.ndarray | Sequence[np.ndarray]


def check_scores(score: np.ndarray, what: str = "probability map") -> np.ndarray:
    """Return ``score`` as a float array after checking it is finite and inside [0, 1]."""
    arr = np.asarray(score)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if arr.size == 0:
        raise ConformalInputError(f"{what} is empty")
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if np.isnan(lo) or np.isnan(hi):
        raise ConformalInputError(f"{what} contains NaN; check the model output")
    if lo < 0.0 or hi > 1.0:
        raise ConformalInputError(
            f"{what} has values in [{lo:g}, {hi:g}], outside [0, 1]: pass probabilities "
            "(apply softmax or sigmoid to logits first)"
        )
    return arr


def check_mask(mask: np.ndarray, shape: tuple[int, ...], index: int | None = None) -> np.ndarray:
    """Return the foreground (``mask != 0``) of a ground-truth mask of the given shape."""
    where = "" if index is None else f" of unit {index}"
    arr = np.asarray(mask)
    if arr.shape != shape:
        raise ConformalInputError(
            f"ground-truth mask{where} has shape {arr.shape} but its probability map has "
            f"shape {shape}; they must match voxel for voxel"
        )
    if np.issubdtype(arr.dtype, np.floating):
        if np.isnan(arr).any():
            raise ConformalInputError(f"ground-truth mask{where} contains NaN")
        if not np.all((arr == 0) | (arr == np.round(arr))):
            raise ConformalInputError(
                f"ground-truth mask{where} has non-integer values; masks are label images"
            )
    return arr != 0


def pair_units(scores: Units, masks: Units) -> list[tuple[np.ndarray, np.ndarray]]:
    """Validate and pair score maps with foreground masks, unit by unit."""
    if len(scores) != len(masks):
        raise ConformalInputError(
            f"{len(scores)} probability maps but {len(masks)} ground-truth masks: "
            "every calibration unit needs exactly one mask"
        )
    if len(scores) == 0:
        raise ConformalInputError("no calibration units given")
    pairs = []
    for i, (s, m) in enumerate(zip(scores, masks, strict=True)):
        s = check_scores(s, f"probability map of unit {i}")
        pairs.append((s, check_mask(m, s.shape, i)))
    return pairs


def check_labels(masks: np.ndarray, n_classes: int, source: str = "samples") -> np.ndarray:
    """Ground-truth label masks as int64: integer labels in ``0..n_classes - 1`` (the classes
    of ``source``, named in the message)."""
    masks = np.asarray(masks)
    if np.issubdtype(masks.dtype, np.floating) and (
        np.isnan(masks).any() or np.any(masks != np.round(masks))
    ):
        raise ConformalInputError("ground-truth masks must hold integer labels")
    if masks.size and (masks.min() < 0 or masks.max() >= n_classes):
        raise ConformalInputError(
            f"ground-truth masks have labels in [{int(masks.min())}, {int(masks.max())}] but "
            f"the {source} have {n_classes} classes (labels 0..{n_classes - 1})"
        )
    return masks.astype(np.int64)
