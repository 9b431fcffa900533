"""Files listed by a DICOMDIR, read through its directory records (pydicom).

A DICOMDIR (the index on a DICOM CD or USB export) lists patients, studies, series and images
as directory records; each image record names its file by Referenced File ID (0004,1500), path
components relative to the DICOMDIR's folder. CD file systems are often upper case while the
copied files are lower case, so components are matched case-insensitively when needed.

pydicom parses the records (nested sequences, any transfer syntax); GDCM in SimpleITK has no
DICOMDIR API.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UnreadableImageError


def _resolve(base: Path, parts: list[str]) -> Path | None:
    """``base / parts``, matching each component case-insensitively if the exact one is missing."""
    p = base
    for part in parts:
        exact = p / part
        if exact.exists():
            p = exact
            continue
        try:
            match = next((e for e in os.scandir(p) if e.name.lower() == part.lower()), None)
        except OSError:
            return None
        if match is None:
            return None
        p = Path(match.path)
    return p if p.is_file() else None


def dicomdir_files(path: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """``(files, missing)``: the files the DICOMDIR's records reference (in record order, each
    once) and the Referenced File IDs that do not exist next to it."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        records = list(ds.get("DirectoryRecordSequence", []) or [])
    except (InvalidDicomError, OSError, ValueError, AttributeError, KeyError) as exc:
        raise UnreadableImageError(
            f"Could not read the DICOMDIR {path}: {exc}.",
            "Open the folder that holds the image files instead.",
        ) from exc
    files: dict[Path, None] = {}
    missing = []
    for rec in records:
        fid = rec.get("ReferencedFileID")
        if not fid:
            continue
        parts = [fid] if isinstance(fid, str) else [str(v) for v in fid]
        parts = [q for part in parts for q in part.replace("\\", "/").split("/") if q]
        found = _resolve(path.parent, parts)
        if found is None:
            missing.append("/".join(parts))
        else:
            files.setdefault(found, None)
    return list(files), missing
