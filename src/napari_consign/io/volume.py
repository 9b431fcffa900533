"""The ``Volume`` type and how a SimpleITK image becomes one.

A ``Volume`` is a scalar scan: a (z, y, x) array reoriented to LPS plus its ``Geometry`` (see
``geometry``). ``volume_from_image`` builds one from an in-memory ``SimpleITK.Image``: it refuses
what the plugin does not segment (``check_supported``: RGB/vector pixels, 1D, 5D+, 4D without a
``frame``) with ``UnsupportedImageError``, makes 2D images one-slice volumes, warns
(``GeometryWarning``) about oblique scans and notes NaN/infinite voxels. Reading files is
``read_scan.read_volume``'s job.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import dicom
from .errors import GeometryWarning, UnsupportedImageError
from .geometry import Geometry, Grid, layer_kwargs
from .readers import ALL_SUFFIXES


@dataclass(frozen=True)
class Volume:
    """A scalar scan: ``array`` (z, y, x) on ``geometry.grid`` (LPS-reoriented).

    ``other_series``: further DICOM series found next to the loaded one; ``notes``: lines for the
    user (other series, skipped files), which the napari reader shows with ``show_info``.
    """

    array: np.ndarray
    geometry: Geometry
    name: str = ""
    other_series: tuple[dicom.SeriesInfo, ...] = ()
    notes: tuple[str, ...] = ()
    modality: str = ""  # DICOM Modality (0008,0060), '' for other formats

    def layer_kwargs(self) -> dict[str, Any]:
        """kwargs for ``viewer.add_image`` (scale/translate/rotate, name, metadata)."""
        return layer_kwargs(self.geometry, name=self.name or None)

    def layer_data(self) -> tuple[np.ndarray, dict[str, Any], str]:
        """napari ``LayerDataTuple``: ``(array, add_kwargs, "image")``."""
        return self.array, self.layer_kwargs(), "image"


def strip_suffix(name: str) -> str:
    """File name without its image suffix (``scan.nii.gz`` -> ``scan``)."""
    low = name.lower()
    for suffix in ALL_SUFFIXES:
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_supported(
    dim: int, size: Sequence[int], components: int, frame: int | None, what: str
) -> None:
    """Refuse what the plugin does not segment: RGB/vector pixels, 1D, 4D without a frame, 5D+."""
    zyx = " x ".join(str(s) for s in tuple(size)[:3][::-1])
    if components > 1:
        kind = "RGB colour" if components in (3, 4) else "vector"
        raise UnsupportedImageError(
            f"{what} has {components} components per voxel ({kind}, {zyx} voxels); this plugin "
            "segments single-channel scans.",
            "Convert it to greyscale (or pick one channel) first, or view it with napari's "
            "built-in reader.",
        )
    if dim == 4:
        t = size[3]
        if frame is None and t > 1:
            shape = ", ".join(str(s) for s in tuple(size)[::-1])
            raise UnsupportedImageError(
                f"{what} is 4D, shape ({shape}) as (t, z, y, x): {t} frames of {zyx} voxels; "
                "this plugin segments one 3D volume at a time.",
                "Extract one frame first (e.g. 'fslroi in.nii.gz frame0.nii.gz 0 1'), or in "
                "Python call read_volume(path, frame=0).",
            )
        if frame is not None and not 0 <= frame < t:
            raise UnsupportedImageError(
                f"Frame {frame} requested but {what} has {t} frames.", f"Use 0 to {t - 1}."
            )
    elif dim not in (2, 3):
        raise UnsupportedImageError(
            f"{what} is {dim}D (size {tuple(size)}); only 2D, 3D and 4D images are supported.",
            "Convert it to a 3D volume first.",
        )


def volume_from_image(
    img: Any,
    *,
    source_path: str = "",
    series_uid: str = "",
    name: str = "",
    frame: int | None = None,
    other_series: tuple[dicom.SeriesInfo, ...] = (),
    notes: tuple[str, ...] = (),
) -> Volume:
    """A ``Volume`` from a ``SimpleITK.Image``: checks, 4D frame, 2D to 3D, LPS reorientation."""
    import SimpleITK as sitk

    what = name or source_path or "The image"
    check_supported(
        img.GetDimension(), img.GetSize(), img.GetNumberOfComponentsPerPixel(), frame, what
    )
    if img.GetDimension() == 4:
        img = img[:, :, :, frame or 0]
    source = Grid.from_image(img)
    if img.GetDimension() == 2:
        img = source.as_3d().apply_to(sitk.JoinSeries(img))
    orientation = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(img.GetDirection())
    loaded = sitk.DICOMOrient(img, "LPS")
    geometry = Geometry(
        grid=Grid.from_image(loaded),
        source=source,
        orientation=orientation,
        source_path=source_path,
        series_uid=series_uid,
    )
    if geometry.is_oblique:
        warnings.warn(
            f"Oblique scan ({what}): its axes are tilted by up to {geometry.oblique_degrees:.3g} "
            "degrees from the patient axes. It is shown at its true physical position (napari may "
            "report non-orthogonal slicing); saved masks keep the scan's own voxel grid.",
            GeometryWarning,
            stacklevel=2,
        )
    array = sitk.GetArrayFromImage(loaded)
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:  # shown by the napari reader; the command line refuses such scans
            notes = (*notes, f"{what}: {bad} voxel(s) are NaN or infinite.")
    return Volume(
        array=array,
        geometry=geometry,
        name=name,
        other_series=other_series,
        notes=notes,
    )
