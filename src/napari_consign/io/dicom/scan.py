"""Find DICOM image files and group them into series stacks.

* ``find_files``: regular files under a folder, breadth first, bounded in depth and count (a
  DICOMDIR in the folder is used instead: its directory records list the files).
* ``scan_folder``: every DICOM image file found, headers read with GDCM, grouped by Series
  Instance UID and split into stacks (``stacks.split_series``); files GDCM cannot parse,
  non-image modalities and data sets without the Part 10 preamble are reported as skipped.
* ``series_of_file`` / ``series_from_files`` / ``choose_series``: the stack of a dropped file,
  of an explicit file list, and the stack a caller asks for.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import DicomSeriesError, UnreadableImageError
from ..formats import is_zarr
from .dicomdir import dicomdir_files
from .headers import SliceInfo, read_slice_info
from .sniff import (
    NON_IMAGE_MODALITIES,
    _file_contains,
    folder_files,
    is_dicom_file,
    is_dicomdir,
    looks_like_dicom_image,
    looks_like_raw_dicom,
)
from .stacks import SeriesInfo, group_stacks, split_series

MAX_DEPTH = 8  # folder levels searched below the chosen folder
MAX_FILES = 20000  # files looked at before the search stops
Progress = Callable[[int, int], None]  # progress(done, total)


def _hidden_or_zarr(entry: os.DirEntry) -> bool:
    return entry.name.startswith(".") or is_zarr(entry.path)


def find_files(
    root: str | os.PathLike, max_depth: int = MAX_DEPTH, max_files: int = MAX_FILES
) -> tuple[list[Path], bool]:
    """``(files, truncated)``: non-hidden regular files under ``root``, breadth first, sorted by
    name per folder, at most ``max_depth`` levels down and ``max_files`` in all (``truncated``
    says the limit was hit). Hidden folders and zarr stores are not entered."""
    out: list[Path] = []
    queue: deque[tuple[str, int]] = deque([(os.fspath(root), 0)])
    while queue:
        folder, depth = queue.popleft()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            try:
                if e.name.startswith("."):
                    continue
                if e.is_file():
                    out.append(Path(e.path))
                    if len(out) >= max_files:
                        return out, True
                elif e.is_dir() and depth < max_depth and not _hidden_or_zarr(e):
                    queue.append((e.path, depth + 1))
            except OSError:
                continue
    return out, False


def candidate_files(root: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """Files to parse for ``root`` (a folder or a DICOMDIR file) and notes about the search."""
    root = Path(root)
    dicomdir = (
        root
        if root.is_file()
        else next(
            (f for f in folder_files(root) if f.name.upper() == "DICOMDIR" and is_dicomdir(f)), None
        )
    )
    if dicomdir is not None:
        files, missing = dicomdir_files(dicomdir)
        notes = (
            [f"{len(missing)} file(s) listed in the DICOMDIR are missing: {', '.join(missing[:3])}"]
            if missing
            else []
        )
        return files, notes
    files, truncated = find_files(root)
    notes = []
    if truncated:
        notes.append(
            f"search stopped after {len(files)} files (at most {MAX_DEPTH} folder levels and "
            f"{MAX_FILES} files are searched); open a subfolder to see the rest"
        )
    return files, notes


def scan_folder(
    folder: str | os.PathLike, progress: Progress | None = None
) -> tuple[list[SeriesInfo], list[str]]:
    """Image stacks under ``folder`` (recursive, bounded; or a DICOMDIR's records), volumes and
    most slices first, and the skipped files (each named with the reason) and search notes."""
    files, skipped = candidate_files(folder)
    base = Path(folder) if Path(folder).is_dir() else Path(folder).parent
    slices: list[SliceInfo] = []
    total = len(files)
    for i, p in enumerate(files):
        if progress is not None and (i % 50 == 0 or i == total - 1):
            progress(i + 1, total)
        name = _relative(p, base)
        if not looks_like_dicom_image(p):
            if not is_dicom_file(p) and looks_like_raw_dicom(p):
                skipped.append(f"{name} (no DICOM file preamble; re-export it)")
            continue
        if is_dicomdir(p):
            continue
        try:
            info = read_slice_info(p)
        except UnreadableImageError as exc:
            skipped.append(f"{name} ({exc.problem.split(': ', 1)[-1].rstrip('.')})")
            continue
        if info.modality.upper() in NON_IMAGE_MODALITIES:
            skipped.append(f"{name} (modality {info.modality})")
            continue
        slices.append(info)
    return group_stacks(slices), skipped


def _relative(p: Path, base: Path) -> str:
    try:
        return str(p.relative_to(base))
    except ValueError:
        return p.name


def series_of_file(path: str | os.PathLike) -> SeriesInfo:
    """The stack ``path`` belongs to, from the files next to it (same 0020|000e, same stack).

    Only siblings whose bytes contain the series UID are parsed, so large mixed folders stay fast.
    """
    info = read_slice_info(path)
    if not info.series_uid:
        return SeriesInfo("", (info,))
    me = Path(path).resolve()
    found = [info]
    needle = info.series_uid.encode()
    for p in folder_files(Path(path).parent):
        if p.resolve() == me or not is_dicom_file(p) or not _file_contains(p, needle):
            continue
        try:
            other = read_slice_info(p)
        except UnreadableImageError:
            continue
        if other.series_uid == info.series_uid:
            found.append(other)
    stacks = split_series(info.series_uid, found)
    return next((s for s in stacks if info.path in s.files), stacks[0])


def series_from_files(paths: Sequence[str | os.PathLike]) -> SeriesInfo:
    """One stack from an explicit list of DICOM files; refuses lists of several series/stacks."""
    slices = [read_slice_info(p) for p in paths]
    groups = group_stacks(slices)
    if len(groups) > 1:
        listing = "; ".join(g.summary() for g in groups[:6])
        n_series = len({g.uid for g in groups})
        what = f"{n_series} different DICOM series" if n_series > 1 else f"{len(groups)} stacks"
        raise DicomSeriesError(
            f"Mixed stack: the {len(slices)} files belong to {what} ({listing}).",
            "Open one series at a time: its folder, or one file of it.",
        )
    return groups[0]


def choose_series(
    series: Sequence[SeriesInfo], key: str | None = None
) -> tuple[SeriesInfo, tuple[SeriesInfo, ...]]:
    """The stack with ``key`` (``SeriesInfo.key``; a plain Series Instance UID picks that
    series' first listed stack), or the first stack; and the others."""
    if not series:
        raise DicomSeriesError("No DICOM image series found.", "Open a folder with image slices.")
    if key is None:
        chosen = series[0]
    else:
        key = key.strip()
        match = [s for s in series if s.key == key] or [s for s in series if s.uid == key]
        if not match:
            listing = "; ".join(s.summary() for s in series[:8])
            raise DicomSeriesError(
                f"Series UID {key} is not in this folder.", f"Available series: {listing}."
            )
        chosen = match[0]
    return chosen, tuple(s for s in series if s is not chosen)
