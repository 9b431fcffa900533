"""npe2 reader hook: ``get_reader(path)`` and the reader it returns.

``get_reader`` is napari's cheap probe: pure-Python byte sniffing (no SimpleITK), never raises,
returns ``None`` for what it cannot read (junk, NIfTI-2, non-DICOM/empty/zarr folders, DICOM
files without pixel data such as RT structure sets and reports). DICOM files are recognised by
their preamble whatever their name (the manifest's patterns offer extensionless scanner names
and DICOMDIR to it); a folder is accepted when a DICOM image file or DICOMDIR lies at most
``_MAX_SNIFF_DEPTH`` levels down among the first ``_MAX_FOLDER_SNIFF`` files. The reader it
returns gives
``[(array, add_kwargs, "image")]``; failures after acceptance raise a ``ConsignIOError`` with a
message saying what is wrong and what to do. Geometry warnings are shown with ``show_warning``,
other DICOM series and skipped files with ``show_info``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .dicom import find_files, is_dicom_file, is_dicomdir, looks_like_dicom_image
from .formats import is_zarr
from .napari_layers import layer_data_tuples
from .readers import sniff_image_file

_MAX_FOLDER_SNIFF = 64  # files sniffed in a folder (subfolders included) before declining
_MAX_SNIFF_DEPTH = 3  # folder levels below the dropped folder


def _probe_file(f: Path) -> bool:
    """One file of a folder: a DICOM image or a DICOMDIR (the only per-file probe)."""
    if f.name.upper() == "DICOMDIR":
        return is_dicomdir(f)
    return looks_like_dicom_image(f)


def _sniff_folder(p: Path) -> bool:
    if is_zarr(p):
        return False
    files, _ = find_files(p, max_depth=_MAX_SNIFF_DEPTH, max_files=_MAX_FOLDER_SNIFF)
    return any(_probe_file(f) for f in files)


def _accepts(path: str | Sequence[str]) -> bool:
    if isinstance(path, (list, tuple)):
        if len(path) == 1:
            return _accepts(path[0])
        return (
            bool(path)
            and all(
                isinstance(q, (str, os.PathLike)) and Path(q).is_file() and is_dicom_file(q)
                for q in path
            )
            and any(looks_like_dicom_image(q) for q in path)
        )
    if not isinstance(path, (str, os.PathLike)):
        return False
    p = Path(path)
    if p.is_dir():
        return _sniff_folder(p)
    return p.is_file() and sniff_image_file(p)


def get_reader(path: str | list[str]) -> Callable[[Any], list[tuple]] | None:
    """npe2 ``get_reader``: ``read_layers`` if ``path`` looks readable, else None; never raises."""
    try:
        return read_layers if _accepts(path) else None
    except Exception:
        return None


def read_layers(path: str | list[str]) -> list[tuple]:
    """Read ``path`` into ``[(array, add_kwargs, "image")]``, notifying napari of warnings/notes.

    The viewer it opens into is set to radiological display (the orientation comes with the
    data, not with the widget)."""
    from ..radiological import follow_radiological_current

    layers = layer_data_tuples(path)
    follow_radiological_current()
    return layers
