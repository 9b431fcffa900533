"""DICOM to ``Volume``: a folder (or DICOMDIR), one file, or a list of files of one series.

``dicom_folder_volume`` scans a folder (bounded, see ``dicom.scan``), loads the chosen stack
(``series_uid``, else the one with the most slices) and lists the others in ``other_series`` and
``notes``; ``dicom_file_volume`` loads a file's whole series (only the file itself, with a
``GeometryWarning``, when the series is a mixed stack); ``dicom_files_volume`` stacks a list of
DICOM files. Refused with ``DicomSeriesError`` / ``UnsupportedImageError`` /
``UnreadableImageError``: zarr stores, folders without image series, non-image DICOM (RT
structures, reports), files without the 'DICM' preamble, a file of another ``series_uid``.
``list_dicom_series`` lists a folder's image series for a picker.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import dicom
from .errors import DicomSeriesError, GeometryWarning, UnreadableImageError, UnsupportedImageError
from .formats import is_zarr
from .volume import Volume, check_supported, strip_suffix, volume_from_image


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
            stacklevel=4,  # at read_volume (> _read_volume > dicom_file_volume > here)
        )
        return dicom.SeriesInfo(series.uid, (mine,), series.duplicates)
    return series


def _dicom_name(series: dicom.SeriesInfo, fallback: str) -> str:
    return series.description or fallback


def dicom_files_volume(paths: list[Path]) -> Volume:
    """The volume of a list of (two or more) DICOM files of one series."""
    not_dicom = [p.name for p in paths if not dicom.is_dicom_file(p)]
    if not_dicom:
        raise DicomSeriesError(
            f"Cannot stack {len(paths)} files into one volume: {', '.join(not_dicom[:3])} "
            "are not DICOM files.",
            "Open one NIfTI/MetaImage/NRRD file at a time, or a list of DICOM files of one series.",
        )
    series = dicom.series_from_files(paths)
    return _dicom_volume(series, str(paths[0].parent), _dicom_name(series, paths[0].name))


def dicom_file_volume(p: Path, series_uid: str | None) -> Volume:
    """The volume of the series of one DICOM file (which must belong to ``series_uid``)."""
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


def dicom_folder_volume(folder: Path, series_uid: str | None, progress: Any = None) -> Volume:
    """The chosen image stack of a DICOM folder or DICOMDIR; the others in its notes."""
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
