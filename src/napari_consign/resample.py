"""Resampling a scan to the model's voxel spacing and its results back to the scan's grid.

The bundled model was trained on 2 mm slices; a 1 mm scan is seen as it was trained only after
resampling. :class:`ModelGrid` pairs the scan's grid (``source``) with a grid of the model's
spacing covering the same field of view (same centre, ``round(n * s / m)`` voxels per axis), and
moves arrays between them with SimpleITK:

* the image goes to the model grid linearly, after a Gaussian anti-alias filter along axes that
  are coarsened (FWHM ``sqrt(m^2 - s^2)`` mm, so fine noise is averaged as a coarser scanner
  would, not picked up voxel by voxel);
* probabilities and band levels come back linearly (a band's boundary then lies within one
  model voxel of where it was), labels with nearest neighbour.

Exported labels therefore stay on the source grid. Arrays are ``(z, y, x)``; spacings are
``(z, y, x)`` in mm. Everything outside the model grid's field of view extrapolates from the
nearest voxel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

__all__ = ["ModelGrid", "map_bands", "plan_grid"]

#: Relative spacing difference below which no resampling is done.
SAME_SPACING = 1e-3


def _image(arr: np.ndarray, spacing_zyx, origin_zyx):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    img.SetOrigin(tuple(float(o) for o in origin_zyx[::-1]))
    return img


def _resample(arr, src_spacing, src_origin, shape, spacing, origin, nearest: bool) -> np.ndarray:
    import SimpleITK as sitk

    img = _image(arr, src_spacing, src_origin)
    ref = _image(np.zeros(shape, np.uint8), spacing, origin)
    f = sitk.ResampleImageFilter()
    f.SetReferenceImage(ref)
    f.SetInterpolator(sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear)
    f.SetUseNearestNeighborExtrapolator(True)
    f.SetOutputPixelType(img.GetPixelID())
    return sitk.GetArrayFromImage(f.Execute(img))


@dataclass(frozen=True)
class ModelGrid:
    """A scan's grid and the model's grid over the same field of view (see the module doc)."""

    source_shape: tuple[int, ...]
    source_spacing: tuple[float, ...]
    model_shape: tuple[int, ...]
    model_spacing: tuple[float, ...]

    @property
    def identity(self) -> bool:
        """True when the grids coincide (no resampling is done)."""
        return self.source_shape == self.model_shape and all(
            abs(a / b - 1.0) < SAME_SPACING
            for a, b in zip(self.source_spacing, self.model_spacing, strict=True)
        )

    def _origins(self) -> tuple[np.ndarray, np.ndarray]:
        """Voxel-centre origins of both grids, with the field-of-view centres at 0."""
        src = -(np.array(self.source_shape) - 1) / 2.0 * np.array(self.source_spacing)
        mod = -(np.array(self.model_shape) - 1) / 2.0 * np.array(self.model_spacing)
        return src, mod

    def to_model(self, volume: np.ndarray) -> np.ndarray:
        """The image on the model grid (float32): anti-aliased, then linear."""
        vol = np.asarray(volume, dtype=np.float32)
        if self.identity:
            return vol
        fwhm = np.sqrt(
            np.maximum(0.0, np.square(self.model_spacing) - np.square(self.source_spacing))
        )
        sigma = fwhm / 2.3548 / np.array(self.source_spacing)  # in source voxels
        if np.any(sigma > 0.05):
            vol = ndi.gaussian_filter(vol, np.where(sigma > 0.05, sigma, 0.0), mode="nearest")
        src, mod = self._origins()
        return _resample(
            vol, self.source_spacing, src, self.model_shape, self.model_spacing, mod, False
        )

    def to_model_labels(self, labels: np.ndarray) -> np.ndarray:
        """Labels on the model grid (nearest neighbour, same dtype)."""
        if self.identity:
            return np.asarray(labels)
        src, mod = self._origins()
        arr = np.asarray(labels)
        out = _resample(
            arr.view(np.uint8) if arr.dtype == bool else arr,
            self.source_spacing,
            src,
            self.model_shape,
            self.model_spacing,
            mod,
            True,
        )
        return out.view(bool) if arr.dtype == bool else out

    def to_source(self, arr: np.ndarray) -> np.ndarray:
        """A model-grid map (probabilities, levels) on the source grid, linearly (float32)."""
        arr = np.asarray(arr, dtype=np.float32)
        if self.identity:
            return arr
        src, mod = self._origins()
        return _resample(
            arr, self.model_spacing, mod, self.source_shape, self.source_spacing, src, False
        )

    def to_source_labels(self, labels: np.ndarray) -> np.ndarray:
        """Model-grid labels on the source grid (nearest neighbour, same dtype)."""
        arr = np.asarray(labels)
        if self.identity:
            return arr
        src, mod = self._origins()
        raw = arr.view(np.uint8) if arr.dtype == bool else arr
        out = _resample(
            raw, self.model_spacing, mod, self.source_shape, self.source_spacing, src, True
        )
        return out.view(bool) if arr.dtype == bool else out

    def model_slice(self, z: int) -> int:
        """The model-grid slice nearest to source slice ``z``."""
        src, mod = self._origins()
        pos = src[0] + z * self.source_spacing[0]
        return int(
            np.clip(np.rint((pos - mod[0]) / self.model_spacing[0]), 0, self.model_shape[0] - 1)
        )

    def source_slice(self, z: int) -> int:
        """The source slice nearest to model-grid slice ``z``."""
        src, mod = self._origins()
        pos = mod[0] + z * self.model_spacing[0]
        last = self.source_shape[0] - 1
        return int(np.clip(np.rint((pos - src[0]) / self.source_spacing[0]), 0, last))

    def plane(self) -> ModelGrid:
        """The in-plane (y, x) part, for moving one slice's results."""
        return ModelGrid(
            (1, *self.source_shape[1:]),
            (1.0, *self.source_spacing[1:]),
            (1, *self.model_shape[1:]),
            (1.0, *self.model_spacing[1:]),
        )

    def describe(self) -> str:
        """One line: what was resampled to what."""
        fmt = " x ".join
        return (
            f"resampled from {fmt(f'{s:g}' for s in self.source_spacing)} mm "
            f"({fmt(map(str, self.source_shape))}) to the model's "
            f"{fmt(f'{s:g}' for s in self.model_spacing)} mm ({fmt(map(str, self.model_shape))})"
        )


def plan_grid(
    shape: tuple[int, ...], spacing_zyx: tuple[float, ...], model_spacing_zyx: tuple[float, ...]
) -> ModelGrid:
    """The model grid for a scan of ``shape`` and ``spacing_zyx`` (all ``(z, y, x)``)."""
    if len(shape) != 3 or len(spacing_zyx) != 3 or len(model_spacing_zyx) != 3:
        raise ValueError("shape and spacings must be (z, y, x)")
    if min(spacing_zyx) <= 0 or min(model_spacing_zyx) <= 0:
        raise ValueError(f"spacings must be positive, got {spacing_zyx} and {model_spacing_zyx}")
    sizes = tuple(
        max(1, round(n * s / m))
        for n, s, m in zip(shape, spacing_zyx, model_spacing_zyx, strict=True)
    )
    same = all(
        abs(s / m - 1.0) < SAME_SPACING for s, m in zip(spacing_zyx, model_spacing_zyx, strict=True)
    )
    model_spacing = tuple(float(s) for s in (spacing_zyx if same else model_spacing_zyx))
    return ModelGrid(
        tuple(int(n) for n in shape),
        tuple(float(s) for s in spacing_zyx),
        tuple(shape) if same else sizes,
        model_spacing,
    )


def map_bands(bands, move: Callable[[np.ndarray], np.ndarray]):
    """``bands`` moved to another grid by ``move`` (a float map -> float map resampler).

    Threshold bands move their per-voxel level maps (rounded back to levels), mask-stack bands
    each level's masks (kept where the moved mask is >= 0.5); nesting is restored by ``Bands``.
    """
    from .conformal.bands import Bands, MaskStackBands, ThresholdBands

    if isinstance(bands, ThresholdBands):
        outer = np.rint(move(bands.outer_level.astype(np.float32))).astype(np.uint8)
        inner = np.rint(move(bands.inner_start.astype(np.float32))).astype(np.uint8)
        return replace(bands, outer_level=outer, inner_start=inner)
    if isinstance(bands, MaskStackBands):
        inner, outer = [], []
        for a in bands.alphas:
            i, o = bands.masks(a)
            inner.append(move(i.astype(np.float32)) >= 0.5)
            outer.append(move(o.astype(np.float32)) >= 0.5)
        return Bands.from_mask_stack(
            bands.alphas, np.stack(inner), np.stack(outer), bands.method, dict(bands.info)
        )
    raise TypeError(f"cannot move bands of type {type(bands).__name__}")
