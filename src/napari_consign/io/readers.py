"""The reader registry: every image format the plugin reads, in one place.

Each :class:`ImageFormat` names its file suffixes, its cheap pure-Python header check (the
napari probe calls it; no SimpleITK) and how ``read_volume`` reads it: ``"file"`` (one file,
SimpleITK) or ``"dicom"`` (a series, :mod:`.dicom`). The suffix lists the rest of the package
uses, and the reader patterns of ``napari.yaml`` (checked by ``tests/io/test_io_readers.py``),
derive from :data:`FORMATS`: adding a format is one entry here, one line in the manifest.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .dicom import is_dicomdir, looks_like_dicom_image
from .formats import looks_like_metaimage, looks_like_nrrd, nifti1_header


@dataclass(frozen=True)
class ImageFormat:
    """One readable format: suffixes (lower case, with the dot), header check, read path."""

    name: str
    suffixes: tuple[str, ...]
    sniff: Callable[[Path], bool]
    read_as: str  # "file" (one SimpleITK file) or "dicom" (a DICOM series)
    #: napari filename patterns beyond ``*<suffix>`` (DICOM files often have no suffix)
    name_patterns: tuple[str, ...] = ()
    writable: bool = False


def _looks_like_dicom(path: Path) -> bool:
    return looks_like_dicom_image(path) or is_dicomdir(path)


FORMATS: tuple[ImageFormat, ...] = (
    ImageFormat(
        "NIfTI",
        (".nii", ".nii.gz"),
        lambda p: nifti1_header(p) is not None,
        "file",
        writable=True,
    ),
    ImageFormat("MetaImage", (".mha", ".mhd"), looks_like_metaimage, "file"),
    ImageFormat("NRRD", (".nrrd",), looks_like_nrrd, "file"),
    ImageFormat(
        "DICOM",
        (".dcm", ".dicom", ".ima"),  # .ima: Siemens
        _looks_like_dicom,
        "dicom",
        # names ending in three digits (IM000001, 17106), UID-like names (1.2.840...), and
        # 8-character names without a dot (DICOMDIR, IM00000J on ISO 9660 CDs). npe2
        # lower-cases a pattern but not the name, so these use no letters.
        name_patterns=("*[0-9][0-9][0-9]", "[0-9]*[0-9]", "[!.][!.][!.][!.][!.][!.][!.][!.]"),
    ),
)


def format_named(name: str) -> ImageFormat:
    """The registered format called ``name`` (KeyError for an unknown one)."""
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise KeyError(name)


NIFTI_SUFFIXES = format_named("NIfTI").suffixes
#: Suffixes of the formats read from one file with SimpleITK.
FILE_SUFFIXES = tuple(s for f in FORMATS if f.read_as == "file" for s in f.suffixes)
#: Every suffix of every format.
ALL_SUFFIXES = tuple(s for f in FORMATS for s in f.suffixes)


def format_of(path: str | os.PathLike) -> ImageFormat | None:
    """The format whose suffix ``path``'s name ends with (any case), or None."""
    name = Path(path).name.lower()
    return next((f for f in FORMATS if name.endswith(f.suffixes)), None)


def sniff_image_file(path: str | os.PathLike) -> bool:
    """True if ``path`` looks like a file ``read_volume`` can read (by name and magic bytes).

    A known suffix decides the header check; any other name is checked for DICOM, which is
    recognised by its preamble whatever the file is called. Never raises.
    """
    p = Path(path)
    fmt = format_of(p) or format_named("DICOM")
    try:
        return bool(fmt.sniff(p))
    except OSError:
        return False


def reader_patterns() -> list[str]:
    """The ``filename_patterns`` napari offers the reader: ``*<suffix>``, then name patterns."""
    return [f"*{s}" for f in FORMATS for s in f.suffixes] + [
        p for f in FORMATS for p in f.name_patterns
    ]


def writer_extensions() -> list[str]:
    """The ``filename_extensions`` of the writer: the suffixes of the writable formats."""
    return [s for f in FORMATS if f.writable for s in sorted(f.suffixes, key=len, reverse=True)]
