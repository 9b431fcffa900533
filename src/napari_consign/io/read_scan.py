"""Read a scan into a ``Volume``: a (z, y, x) array plus its ``Geometry``.

``read_volume`` accepts NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``), NRRD,
a DICOM folder, a single DICOM file (its whole series is loaded from the folder) or a list of
DICOM files of one series. Every scan is reoriented to LPS (see ``geometry``); 2D images become
one-slice volumes. Refused with a clear ``ConsignIOError``: 4D images (unless ``frame`` picks
one), multi-component (RGB/vector) images, damaged files, non-image DICOM, mixed stacks.
Warnings (``GeometryWarning``, through ``warnings.warn``): oblique scans, uneven DICOM slice
positions, multi-frame DICOM geometry.

This module only dispatches by what the path is: one file (``image_file``), DICOM
(``dicom_volume``); ``volume`` builds the ``Volume``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import dicom
from .dicom_volume import dicom_file_volume, dicom_files_volume, dicom_folder_volume
from .errors import ConsignIOError, UnreadableImageError, sitk_reason
from .image_file import read_image_file
from .volume import Volume, strip_suffix, volume_from_image


def read_volume(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    series_uid: str | None = None,
    frame: int | None = None,
    progress: dicom.scan.Progress | None = None,
) -> Volume:
    """Read a scan file, DICOM folder, DICOMDIR, DICOM file or list of DICOM files.

    DICOM folders are searched recursively (bounded, see ``dicom.scan``) and their series split
    into stacks. ``series_uid`` picks a stack (``SeriesInfo.key``) or series (its UID: its first
    stack); default: the stack with the most slices among those forming one volume; the others
    are listed in ``Volume.other_series`` and ``notes``. ``progress(done, total)`` is called
    while DICOM headers are read. ``frame`` picks one frame of a 4D image (ignored for 3D).
    Raises ``ConsignIOError`` subclasses with a clear message, never a bare SimpleITK error.
    """
    try:
        return _read_volume(path, series_uid=series_uid, frame=frame, progress=progress)
    except ConsignIOError:
        raise
    except (RuntimeError, OSError, ValueError) as exc:
        raise UnreadableImageError(
            f"Could not read {path}: {sitk_reason(exc)}.",
            "Check that it is a complete NIfTI, MetaImage, NRRD or DICOM image.",
        ) from exc


def _read_volume(
    path: Any, *, series_uid: str | None, frame: int | None, progress: Any = None
) -> Volume:
    if not isinstance(path, (str, os.PathLike)):
        paths = [Path(p) for p in path]
        if len(paths) == 1:
            return _read_volume(paths[0], series_uid=series_uid, frame=frame)
        if not paths:
            raise UnreadableImageError("No file given.", "Pass a file or folder path.")
        return dicom_files_volume(paths)

    p = Path(path)
    if not p.exists():
        raise UnreadableImageError(f"No such file or folder: {p}.", "Check the path.")
    if not p.is_dir() and not p.is_file():  # never open a FIFO or device: it could block
        raise UnreadableImageError(
            f"{p} is not a regular file (a FIFO, socket or device).", "Give a scan file."
        )
    if p.is_dir() or dicom.is_dicomdir(p):
        return dicom_folder_volume(p, series_uid, progress)
    if (
        p.suffix.lower() in (".dcm", ".dicom")
        or dicom.is_dicom_file(p)
        or dicom.looks_like_raw_dicom(p)
    ):
        return dicom_file_volume(p, series_uid)
    img = read_image_file(p, frame)
    return volume_from_image(img, source_path=str(p), name=strip_suffix(p.name), frame=frame)
