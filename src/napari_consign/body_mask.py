"""The body (foreground) mask of a scan, and bands restricted to it.

Rule ``"otsu-largest-fill"`` (the bundled model card's ``body_mask``), in 2D or 3D:

1. Otsu's method with two thresholds (SimpleITK ``OtsuMultipleThresholds``, 128 bins: air,
   dark tissue such as CSF, bright tissue); the foreground is everything above the lower one;
2. the largest connected foreground component is kept, with every other component at least
   ``KEEP_FRACTION`` of its size;
3. a binary closing with a ball of radius 2 voxels closes sulci and thin gaps;
4. holes are filled (3D, then every axial slice: dark ventricles and dark lesions inside the
   head belong to the body);
5. the mask is dilated by one voxel (partial-volume edges).

Why restricting bands to it keeps every guarantee: for a test scan whose structure lies inside
the mask, removing voxels outside the mask from the outer band removes no structure (the FNR
loss is unchanged) and removing them from the inner band can only remove false positives (the
inner loss can only fall). The calibration applies the same rule to its scores, so thresholds
are calibrated for what the bands show.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

__all__ = ["BODY_RULE", "body_mask", "restrict_bands", "restrict_scores"]

BODY_RULE = "otsu-largest-fill"
#: Components at least this fraction of the largest one are kept (a low axial slice cuts the
#: brain into temporal lobes and cerebellum; in 3D they are one component).
KEEP_FRACTION = 0.05


def body_mask(image: np.ndarray) -> np.ndarray:
    """Boolean foreground mask of a 2D ``(y, x)`` or 3D ``(z, y, x)`` scan (rule above).

    A constant image has no foreground: its mask is all False.
    """
    import SimpleITK as sitk

    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim not in (2, 3):
        raise ValueError(f"body_mask needs a 2D or 3D image, got shape {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.any() or np.ptp(arr[finite]) == 0:
        return np.zeros(arr.shape, bool)
    arr = np.where(finite, arr, np.min(arr[finite]))
    img = sitk.GetImageFromArray(arr)
    fg = sitk.OtsuMultipleThresholds(img, 2, 0, 128) > 0
    cc = sitk.GetArrayFromImage(sitk.ConnectedComponent(fg))
    sizes = np.bincount(cc.ravel())
    sizes[0] = 0
    if sizes.max() == 0:
        return np.zeros(arr.shape, bool)
    largest = (sizes >= KEEP_FRACTION * sizes.max())[cc]
    pad = 3
    padded = np.pad(largest, pad)
    ball = ndi.generate_binary_structure(arr.ndim, 1)
    closed = ndi.binary_closing(padded, ball, iterations=2)[(slice(pad, -pad),) * arr.ndim]
    filled = ndi.binary_fill_holes(closed | largest)
    if filled.ndim == 3:
        for z in range(filled.shape[0]):
            filled[z] = ndi.binary_fill_holes(filled[z])
    return ndi.binary_dilation(filled, ball)


def restrict_scores(scores: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Scores with every voxel outside ``body`` set to 0 (the calibration side of the rule)."""
    return np.where(body, scores, np.zeros((), dtype=np.asarray(scores).dtype))


def restrict_bands(bands, body: np.ndarray):
    """``bands`` with both bands emptied outside ``body`` (same shape as the bands)."""
    from .conformal.bands import MaskStackBands, ThresholdBands

    body = np.asarray(body, bool)
    if body.shape != tuple(bands.shape):
        raise ValueError(f"body mask {body.shape} does not match the bands {tuple(bands.shape)}")
    if isinstance(bands, ThresholdBands):
        return replace(bands, outer_level=np.where(body, bands.outer_level, 0).astype(np.uint8))
    if isinstance(bands, MaskStackBands):
        keep = np.packbits(body.reshape(-1))
        return replace(
            bands, packed_inner=bands.packed_inner & keep, packed_outer=bands.packed_outer & keep
        )
    raise TypeError(f"cannot restrict bands of type {type(bands).__name__}")
