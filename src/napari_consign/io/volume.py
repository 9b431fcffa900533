"""Read a scan into a ``Volume``: a (z, y, x) array plus its ``Geometry``.

``read_volume`` accepts NIfTI (``.nii``, ``.nii.gz``), MetaImage (``.mha``, ``.mhd``), NRRD,
a DICOM folder, a single DICOM file (its whole series is loaded from the folder) or a list of
DICOM files of one series. Every scan is reoriented to LPS (see ``geometry``); 2D images become
one-slice volumes. Refused with a clear ``ConsignIOError``: 4D images (unless ``frame`` picks
one), multi-component (RGB/vector) images, damaged files, non-image DICOM, mixed stacks.
Warnings (``GeometryWarning``, through ``warnings.warn``): oblique scans, uneven DICOM slice
positions, multi-frame DICOM geometry.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import dicom
from .errors import (
    ConsignIOError,
    DicomSeriesError,
    GeometryWarning,
    UnreadableImageError,
    UnsupportedImageError,
    sitk_reason,
)
from .formats import is_zarr, metaimage_missing_data, nifti1_header, nifti_truncation
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


def _read_file(path: Path, frame: int | None) -> Any:
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


def _dicom_volume(
    series: dicom.SeriesInfo,
    source_path: str,
    name: str,
    other_series: tuple[dicom.SeriesInfo, ...] = (),
    notes: tuple[str, ...] = (),
) -> Volume:
    first = series.slices[0]
    check_supported(3, first.size, first.components, None, f"DICOM series {series.summary()}")
    img = dicom.read_series(series)
    if series.duplicates:
        shown = ", ".join(Path(p).name for p in series.duplicates[:3])
        notes = (
            *notes,
            f"Ignored {len(series.duplicates)} duplicate DICOM file(s) of already loaded images "
            f"(same SOP Instance UID): {shown}.",
        )
    volume = volume_from_image(
        img,
        source_path=source_path,
        series_uid=series.uid,
        name=name,
        other_series=other_series,
        notes=notes,
    )
    return replace(volume, modality=series.modality)


def _series_or_single_file(series: dicom.SeriesInfo, path: Path) -> dicom.SeriesInfo:
    """The series of a dropped file, or only that file if the series is a mixed stack."""
    if len(series.slices) < 2:
        return series
    try:
        dicom.check_stack(series)
    except DicomSeriesError as exc:
        me = path.resolve()
        mine = next((s for s in series.slices if Path(s.path).resolve() == me), series.slices[0])
        warnings.warn(
            f"Loaded only {path.name}: {exc.problem}",
            GeometryWarning,
            stacklevel=3,
        )
        return dicom.SeriesInfo(series.uid, (mine,), series.duplicates)
    return series


def _dicom_name(series: dicom.SeriesInfo, fallback: str) -> str:
    return series.description or fallback


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
        not_dicom = [p.name for p in paths if not dicom.is_dicom_file(p)]
        if not_dicom:
            raise DicomSeriesError(
                f"Cannot stack {len(paths)} files into one volume: {', '.join(not_dicom[:3])} "
                "are not DICOM files.",
                "Open one NIfTI/MetaImage/NRRD file at a time, or a list of DICOM files of one "
                "series.",
            )
        series = dicom.series_from_files(paths)
        return _dicom_volume(series, str(paths[0].parent), _dicom_name(series, paths[0].name))

    p = Path(path)
    if not p.exists():
        raise UnreadableImageError(f"No such file or folder: {p}.", "Check the path.")
    if not p.is_dir() and not p.is_file():  # never open a FIFO or device: it could block
        raise UnreadableImageError(
            f"{p} is not a regular file (a FIFO, socket or device).", "Give a scan file."
        )
    if p.is_dir() or dicom.is_dicomdir(p):
        return _read_folder(p, series_uid, progress)
    if (
        p.suffix.lower() in (".dcm", ".dicom")
        or dicom.is_dicom_file(p)
        or dicom.looks_like_raw_dicom(p)
    ):
        if not dicom.is_dicom_file(p):
            _refuse_without_preamble(p)
        if not dicom.has_pixel_data(p):
            kind, label = dicom.describe_dataset(p)
            what = f"{kind} ({label})" if kind else "an RT structure set, plan, report or waveform?"
            raise UnsupportedImageError(
                f"{p} is a DICOM file without pixel data: {what}, not an image.",
                "Open the image series it refers to.",
            )
        series = dicom.series_of_file(p)
        if series_uid is not None and series_uid.strip() not in (series.uid, series.key):
            raise DicomSeriesError(
                f"{p.name} belongs to series {series.uid}, not {series_uid}.",
                "Open the folder to choose among its series.",
            )
        series = _series_or_single_file(series, p)
        return _dicom_volume(series, str(p), _dicom_name(series, strip_suffix(p.name)))
    img = _read_file(p, frame)
    return volume_from_image(img, source_path=str(p), name=strip_suffix(p.name), frame=frame)


def _refuse_without_preamble(p: Path) -> None:
    """Raise the clearest error for a ``.dcm`` file without the 'DICM' marker at byte 128."""
    kind, label = dicom.describe_dataset(p)
    if kind:
        raise UnsupportedImageError(
            f"{p} is a DICOM data set without the file preamble: {kind} ({label}), not an image.",
            "Open the image series it refers to.",
        )
    if label:
        raise UnreadableImageError(
            f"{p} is a DICOM data set ({label}) without the Part 10 file preamble ('DICM' "
            "marker at byte 128), which this reader does not open.",
            "Re-export it as a DICOM file, e.g. with pydicom: dcmread(path, force=True)"
            ".save_as(out, enforce_file_format=True), or 'gdcmconv in.dcm out.dcm'.",
        )
    raise UnreadableImageError(
        f"{p} is not a DICOM file (no 'DICM' marker at byte 128).",
        "It may be truncated or a raw DICOM without file meta information; re-export it.",
    )


def _read_folder(folder: Path, series_uid: str | None, progress: Any = None) -> Volume:
    if is_zarr(folder):
        raise UnsupportedImageError(
            f"{folder} is a zarr store, not a DICOM folder.", "Open it with a zarr reader."
        )
    series, skipped = dicom.scan_folder(folder, progress=progress)
    if not series:
        n_files = len(dicom.candidate_files(folder)[0])
        why = f"; skipped: {', '.join(skipped[:3])}"
        raise DicomSeriesError(
            f"No readable DICOM image series in {folder} ({n_files} file(s) checked, "
            f"subfolders included{why if skipped else ''}).",
            "Open the folder (or DICOMDIR) that holds the image slices, or one DICOM file.",
        )
    chosen, others = dicom.choose_series(series, series_uid)
    notes = []
    if others:
        listing = "; ".join(s.summary() for s in others[:10])
        more = f" and {len(others) - 10} more" if len(others) > 10 else ""
        n_series = len({s.uid for s in series})
        stacks = f" in {len(series)} stacks" if len(series) != n_series else ""
        notes.append(
            f"{folder.name} holds {n_series} DICOM series{stacks}; loaded {chosen.summary()}. "
            f"Others: {listing}{more}. To open another, use Plugins > CONSIGN Uncertainty > "
            "Open DICOM series (or read_volume(folder, series_uid=...) in Python)."
        )
    if skipped:
        notes.append(f"Skipped {len(skipped)} DICOM file(s): {', '.join(skipped[:5])}.")
    return _dicom_volume(
        chosen,
        str(folder),
        _dicom_name(chosen, folder.name),
        other_series=others,
        notes=tuple(notes),
    )


def list_dicom_series(folder: str | os.PathLike) -> list[dicom.SeriesInfo]:
    """All image series in a DICOM folder, most slices first (for a series picker)."""
    series, _ = dicom.scan_folder(folder)
    return series
