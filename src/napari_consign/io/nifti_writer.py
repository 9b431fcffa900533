"""Write labels or band maps to NIfTI on the source scan's own voxel grid.

``write_nifti(path, array, geometry)`` takes an array on ``geometry.grid`` (the LPS-reoriented
grid the scan was loaded on), undoes the reorientation (``Geometry.to_source_array``: the axis
permutation and flips ``sitk.DICOMOrient`` back to ``geometry.orientation`` would do) and writes
it with the source's exact spacing, origin and direction, so the mask opens in place over the
original file in 3D Slicer or ITK-SNAP. NIfTI stores geometry in float32: positions round-trip
to about 1e-5 mm.

Safety: never writes over the source scan (nor any of ``inputs``); refuses an existing file
unless ``overwrite=True``, and even then replaces only NIfTI files (band files: only those this
program wrote, marked in the header's ``descrip``; see :mod:`napari_consign.io.safe_write`). The
file is written to a hidden temporary file next to the target, re-read and compared voxel for
voxel (ITK does not raise on a short write, e.g. a full disk), then renamed: a failed write
loses nothing and leaves nothing at the final name.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import safe_write
from .errors import GeometryWarning, WriteRefusedError, sitk_reason
from .geometry import Geometry
from .readers import NIFTI_SUFFIXES


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(a.resolve()) == os.path.abspath(b.resolve())


def check_target(path: str | os.PathLike, geometry: Geometry | None, overwrite: bool) -> Path:
    """Validate a NIfTI target path; raise ``WriteRefusedError`` with the reason if refused."""
    p = Path(path)
    if not p.name.lower().endswith(NIFTI_SUFFIXES):
        raise WriteRefusedError(
            f"Not a NIfTI file name: {p.name}.", "End the name with .nii.gz (or .nii)."
        )
    if geometry is not None and geometry.source_path:
        src = Path(geometry.source_path)
        if _same_file(p, src):
            raise WriteRefusedError(
                f"Refusing to overwrite the source scan {src}.",
                "Save the mask under a new name, e.g. next to the scan as '<scan>_mask.nii.gz'.",
            )
    if p.is_dir():
        raise WriteRefusedError(f"{p} is a folder.", "Give a file name ending in .nii.gz.")
    if not p.parent.is_dir():
        raise WriteRefusedError(
            f"The folder {p.parent} does not exist.", "Create it or choose another."
        )
    if p.exists() and not overwrite:
        raise WriteRefusedError(
            f"{p} already exists.", "Choose another name, or pass overwrite=True to replace it."
        )
    return p


def _storage_dtype(array: np.ndarray) -> np.ndarray:
    """Bool -> uint8; integers -> the smallest common NIfTI type holding their range."""
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        lo, hi = (int(array.min()), int(array.max())) if array.size else (0, 0)
        for dt in (np.uint8, np.int16, np.uint16, np.int32):
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max:
                return array.astype(dt, copy=False)
        return array.astype(np.int64, copy=False)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        return array
    raise WriteRefusedError(
        f"Cannot store voxels of type {array.dtype} in NIfTI.", "Convert to integers or floats."
    )


def write_nifti(
    path: str | os.PathLike,
    array: Any,
    geometry: Geometry | None = None,
    *,
    overwrite: bool = False,
    kind: str = "labels",
    inputs: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write ``array`` (z, y, x, on ``geometry.grid``) to NIfTI on the source voxel grid.

    Without ``geometry`` the array is written with 1 mm voxels at the origin (identity) and a
    ``GeometryWarning`` says so. Returns the path written. Raises ``WriteRefusedError`` for the
    source scan, an existing file (unless ``overwrite``), a wrong suffix or a shape mismatch;
    ``kind`` is "labels" (any NIfTI may be replaced with ``overwrite``) or "bands" (only band
    files of this program); ``inputs`` are files of the run that are never replaced.
    """
    import SimpleITK as sitk

    data = np.asarray(array)
    if data.ndim not in (2, 3):
        raise WriteRefusedError(
            f"Cannot write a {data.ndim}D array of shape {data.shape} as a mask.",
            "Save one 2D or 3D volume at a time.",
        )
    if geometry is None:
        geometry = Geometry.from_affine(data.shape, np.eye(data.ndim + 1))
        warnings.warn(
            f"No source geometry for {Path(path).name}: written with 1 mm voxels at the origin "
            "(identity). It will not line up with the scan in other tools.",
            GeometryWarning,
            stacklevel=2,
        )
    p = check_target(path, geometry, overwrite)
    if data.shape != geometry.shape:
        raise WriteRefusedError(
            f"Array shape {data.shape} does not match the scan's shape {geometry.shape} (z, y, x).",
            "Save a mask made on this scan, or load the scan it belongs to.",
        )
    sources = (geometry.source_path,) if geometry.source_path else ()
    safe_write.check_target(p, kind, inputs=(*sources, *inputs), overwrite=overwrite)
    stored = _storage_dtype(geometry.to_source_array(data))
    img = sitk.GetImageFromArray(stored)
    geometry.source.apply_to(img)
    img.SetMetaData("ITK_FileNotes", f"{safe_write.NIFTI_MARKER} {kind}")
    compress = p.name.lower().endswith(".nii.gz")

    def write(tmp: Path) -> None:
        try:
            sitk.WriteImage(img, str(tmp), useCompression=compress)
        except RuntimeError as exc:
            raise safe_write.OutputError(
                f"Could not write {p}: {sitk_reason(exc)}.",
                "Check the folder is writable and has space.",
            ) from exc

    def verify(tmp: Path) -> None:
        back = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp)))
        if back.shape != stored.shape or not np.array_equal(back, stored, equal_nan=True):
            raise safe_write.OutputError(f"Could not write {p} completely (is the disk full?).")

    safe_write.write_atomically(p, write, verify, replace=overwrite)
    return p
