"""Read one DICOM stack as a 3D ``SimpleITK.Image`` with its true geometry.

``read_series`` refuses stacks with a ``problem`` (``stacks.check_stack``) and stacks too large
for memory (checked from the headers before any pixel is decoded), then reads the files with GDCM
and, by the stack's ``layout``:

* ``regular``: as read (ITK's grid from the sorted files), checked against the positions;
* ``uneven``: as read, with a ``GeometryWarning`` giving the largest deviation;
* ``resample``: resampled along the slice normal onto a regular grid by linear interpolation
  between the two neighbouring acquired slices, with a ``GeometryWarning``; every voxel lies at
  its true physical position (origin: the first slice's Image Position (Patient)).

A missing Pixel Spacing is warned about (pixels shown as 1 x 1 mm); a multi-frame file's geometry
may be incomplete (SimpleITK issue 440) and is warned about too.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from ..errors import GeometryWarning, UnreadableImageError, UnsupportedImageError, sitk_reason
from .stacks import SeriesInfo, _depths, check_stack

MAX_VOXELS = 2**31 - 1  # numpy/napari indexing and GDCM buffers beyond this are not supported
PEAK_COPIES = 3  # the decoded image, its LPS reorientation and the array handed to napari


def _available_memory() -> int | None:
    """Bytes of physical memory currently free, None where the OS does not say."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def output_slices(series: SeriesInfo) -> int:
    """Slices of the volume ``read_series`` builds (the resampled grid for ``resample``)."""
    if series.layout == "resample":
        span = float(np.ptp(_depths(series.slices)))
        return round(span / series.spacing) + 1
    return series.n_slices


def check_size(series: SeriesInfo, available: int | None = None) -> None:
    """Refuse, before decoding, a stack whose voxels exceed ``MAX_VOXELS`` or whose peak memory
    (``PEAK_COPIES`` x decoded bytes) exceeds the free memory (``available``, default: asked of
    the OS)."""
    first = series.slices[0]
    x, y = first.size[:2]
    n = output_slices(series)
    voxels = int(x) * int(y) * n * first.components
    item = 4 if series.layout == "resample" else max(first.bits_allocated // 8, 1)
    decoded = voxels * item
    free = _available_memory() if available is None else available
    too_big = voxels > MAX_VOXELS
    no_memory = free is not None and PEAK_COPIES * decoded > free
    if too_big or no_memory:
        why = (
            f"more than {MAX_VOXELS:,} voxels"
            if too_big
            else f"only {free / 1e9:.3g} GB of memory is free"
        )
        raise UnsupportedImageError(
            f"DICOM {series.summary()} would be {x} x {y} x {n} voxels, about "
            f"{decoded / 1e9:.3g} GB decoded ({PEAK_COPIES * decoded / 1e9:.3g} GB while "
            f"loading): {why}.",
            "Open a smaller series or stack, or crop/downsample it with a DICOM tool first.",
        )


def _check_positions(img: Any, series: SeriesInfo) -> None:
    """Warn if the files' slice positions do not lie on the regular grid ITK built."""
    slices = series.slices
    if len(slices) < 2 or any(s.position is None for s in slices):
        return
    expected = np.array([img.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(len(slices))])
    actual = np.array([s.position for s in slices])
    dev = np.linalg.norm(actual - expected, axis=1)
    k = int(np.argmax(dev))
    dz = img.GetSpacing()[2]
    if dev[k] > max(0.01, 0.01 * dz):
        warnings.warn(
            f"Uneven DICOM slice positions in series {series.summary()}: slice {k} lies "
            f"{dev[k]:.3g} mm from where the regular volume grid (slice spacing {dz:.4g} mm) "
            "places it (rounded positions in the headers?); distances across slices are "
            "approximate to that amount.",
            GeometryWarning,
            stacklevel=3,
        )


def _resample(img: Any, series: SeriesInfo) -> Any:
    """The stack on a regular grid along its normal (linear interpolation between slices)."""
    import SimpleITK as sitk

    slices = series.slices
    arr = sitk.GetArrayFromImage(img).astype(np.float32)  # (n, y, x) in depth order
    depth = _depths(slices)
    depth = depth - depth[0]
    n_out = output_slices(series)
    grid = np.arange(n_out) * series.spacing
    k = np.clip(np.searchsorted(depth, grid, side="right") - 1, 0, len(depth) - 2)
    t = np.clip((grid - depth[k]) / (depth[k + 1] - depth[k]), 0.0, 1.0)
    out = (1 - t)[:, None, None] * arr[k] + t[:, None, None] * arr[k + 1]
    acquired = int(np.sum(np.isclose(t, 0, atol=1e-6) | np.isclose(t, 1, atol=1e-6)))
    row, col = np.asarray(slices[0].orientation[:3]), np.asarray(slices[0].orientation[3:])
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    new = sitk.GetImageFromArray(out.astype(np.float32))
    new.SetSpacing((*img.GetSpacing()[:2], float(series.spacing)))
    new.SetOrigin(tuple(float(v) for v in slices[0].position))
    new.SetDirection(tuple(np.column_stack([row, col, normal]).ravel().tolist()))
    gaps = np.diff(depth)
    warnings.warn(
        f"Uneven DICOM slice positions in series {series.summary()}: gaps of {gaps.min():.4g} "
        f"to {gaps.max():.4g} mm between slices (slices missing or unevenly spaced). Resampled "
        f"along the slice normal onto a regular grid of {series.spacing:.4g} mm by linear "
        f"interpolation between neighbouring slices: {n_out - acquired} of {n_out} slices are "
        "interpolated, the others are acquired slices at their true positions.",
        GeometryWarning,
        stacklevel=3,
    )
    return new


def read_series(series: SeriesInfo) -> Any:
    """Read a stack as a ``SimpleITK.Image`` (3D): checks first, then geometry as described in
    the module docstring. Raises ``ConsignIOError`` subclasses with a clear message."""
    import SimpleITK as sitk

    check_stack(series)
    check_size(series)
    files = list(series.files)
    try:
        if len(files) == 1:
            img = sitk.ReadImage(files[0], imageIO="GDCMImageIO")
        else:
            r = sitk.ImageSeriesReader()
            r.SetImageIO("GDCMImageIO")
            r.SetFileNames(files)
            img = r.Execute()
    except RuntimeError as exc:
        raise UnreadableImageError(
            f"Could not decode DICOM series {series.summary()}: {sitk_reason(exc)}.",
            "The files may be damaged or use a compression GDCM cannot decode; re-export the "
            "series uncompressed (e.g. 'gdcmconv --raw').",
        ) from exc
    first = series.slices[0]
    if not first.pixel_spacing and tuple(img.GetSpacing()[:2]) == (1.0, 1.0):  # GDCM default
        warnings.warn(
            f"No Pixel Spacing (0028,0030) in DICOM series {series.summary()}: pixels are shown "
            "as 1 x 1 mm squares, so lengths, areas and volumes are in pixel units, not "
            "millimetres.",
            GeometryWarning,
            stacklevel=2,
        )
    if series.layout == "resample":
        return _resample(img, series)
    if len(files) > 1:
        _check_positions(img, series)
    elif first.frames > 1:
        warnings.warn(
            f"Multi-frame DICOM ({first.frames} frames in one file, "
            f"{series.summary()}): SimpleITK takes one origin, orientation and slice spacing "
            f"({img.GetSpacing()[2]:.4g} mm) for all frames and may miss per-frame positions "
            "(SimpleITK issue 440), so the geometry may be incomplete. Check it against the "
            "scanner's values before measuring distances.",
            GeometryWarning,
            stacklevel=2,
        )
    return img
