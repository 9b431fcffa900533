"""Reading one non-DICOM image file (NIfTI, MetaImage, NRRD) into a ``SimpleITK.Image``.

``read_image_file`` checks first what ITK would silently get wrong, and refuses it with
``UnreadableImageError``: a NIfTI-1 voxel size (pixdim) of 0 or NaN (read as 1 mm), NaN or
infinite float voxels (read as 0), a truncated NIfTI, a MetaImage header without its voxel file.
Then it reads the header, refuses unsupported images (``volume.check_supported``) before the
voxels are loaded, and turns SimpleITK's errors into one clear ``UnreadableImageError``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UnreadableImageError, sitk_reason
from .formats import metaimage_missing_data, nifti1_header, nifti_truncation
from .volume import check_supported


def nifti_spacing_problem(path: str | os.PathLike) -> str | None:
    """None if a NIfTI-1 file's voxel sizes (pixdim) are positive numbers, else the problem.

    ITK silently reads a pixdim of 0 or NaN as 1 mm, which would make every volume in mL wrong.
    """
    import struct

    found = nifti1_header(path)
    if found is None:
        return None
    order, head = found
    ndim = max(1, min(struct.unpack(order + "h", head[40:42])[0], 3))
    pixdim = struct.unpack(order + "8f", head[76:108])[1 : 1 + ndim]
    bad = [f"{'xyz'[i]} = {v:g}" for i, v in enumerate(pixdim) if not (np.isfinite(v) and v > 0)]
    return f"voxel size (pixdim) {', '.join(bad)} mm" if bad else None


_FLOAT_DATATYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 and float64


def nifti_nonfinite(path: str | os.PathLike, chunk: int = 1 << 24) -> int:
    """Number of NaN or infinite voxels of a float NIfTI-1 file (0 for other files).

    ITK's NIfTI reader silently turns them into 0, so they are counted in the raw data,
    streamed in chunks of ``chunk`` bytes.
    """
    import gzip
    import struct

    found = nifti1_header(path)
    if found is None or found[1][344:348] != b"n+1\x00":
        return 0
    order, head = found
    dtype = _FLOAT_DATATYPES.get(struct.unpack(order + "h", head[70:72])[0])
    if dtype is None:
        return 0
    offset = int(struct.unpack(order + "f", head[108:112])[0])
    item = np.dtype(order + dtype)
    bad = 0
    p = Path(path)
    with gzip.open(p, "rb") if p.name.lower().endswith(".gz") else open(p, "rb") as f:
        f.read(offset)
        step = chunk - chunk % item.itemsize
        while block := f.read(step):
            usable = len(block) - len(block) % item.itemsize
            bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(block[:usable], item))))
    return bad


def read_image_file(path: Path, frame: int | None) -> Any:
    """The SimpleITK image of one scan file (``frame``: the 4D frame wanted, if any)."""
    import SimpleITK as sitk

    spacing = nifti_spacing_problem(path)
    if spacing:
        raise UnreadableImageError(
            f"{path} has an invalid {spacing}; volumes and positions would be wrong.",
            "Fix the header (e.g. nibabel: img.header.set_zooms(...)) or re-export the scan.",
        )
    nonfinite = nifti_nonfinite(path)
    if nonfinite:
        raise UnreadableImageError(
            f"{path} has {nonfinite} NaN or infinite voxel(s), which would silently read as 0.",
            "Replace them (e.g. with the background value) and save the scan again.",
        )
    truncated = nifti_truncation(path)
    if truncated:
        raise UnreadableImageError(
            f"{path} is truncated: {truncated}.",
            "Copy or export the scan again (an interrupted copy or download?).",
        )
    missing = metaimage_missing_data(path)
    if missing:
        raise UnreadableImageError(
            f"{path.name} refers to the voxel file '{missing}', which is not in {path.parent}.",
            "Keep the .mhd header and its .raw/.zraw file together in one folder.",
        )
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    try:
        r.ReadImageInformation()
    except RuntimeError as exc:
        raise UnreadableImageError(
            f"Could not read {path}: {sitk_reason(exc)}.",
            "It is not a NIfTI-1, MetaImage, NRRD or DICOM image SimpleITK can read, or its "
            "header is damaged. Re-export the scan (NIfTI-2 files: convert to NIfTI-1).",
        ) from exc
    check_supported(r.GetDimension(), r.GetSize(), r.GetNumberOfComponents(), frame, path.name)
    try:
        return r.Execute()
    except RuntimeError as exc:
        raise UnreadableImageError(
            f"Could not read the voxel data of {path}: {sitk_reason(exc)}.",
            "The file is probably truncated or damaged (an interrupted copy or download); "
            "copy or export it again.",
        ) from exc
