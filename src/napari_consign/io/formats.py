"""Pure-Python checks of image file headers (no SimpleITK; the napari probe uses them).

``nifti1_header``, ``looks_like_metaimage``, ``looks_like_nrrd``: the header checks the reader
registry (:mod:`.readers`) runs per format; ``is_zarr``: stores the plugin leaves to others.
``nifti_truncation``: ITK's NIfTI reader silently accepts truncated files (missing voxels read
as garbage), so ``read_volume`` checks the byte count against the header first.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

NIFTI1_MAGICS = (b"n+1\x00", b"ni1\x00")
ZARR_MARKERS = (".zarray", ".zgroup", ".zattrs", "zarr.json")


def is_zarr(path: str | os.PathLike) -> bool:
    """True for a zarr store (``*.zarr`` or a folder with zarr metadata files)."""
    p = Path(path)
    return p.suffix.lower() == ".zarr" or any((p / m).exists() for m in ZARR_MARKERS)


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def nifti1_header(path: str | os.PathLike) -> tuple[str, bytes] | None:
    """``(byte_order, header)`` of a NIfTI-1 file (``.nii``/``.nii.gz``), or None. Never raises."""
    try:
        with _open(Path(path)) as f:
            head = f.read(348)
    except (OSError, EOFError, zlib.error):
        return None
    if len(head) < 348 or head[344:348] not in NIFTI1_MAGICS:
        return None
    for order in ("<", ">"):
        if struct.unpack(order + "i", head[:4])[0] == 348:
            return order, head
    return None


def looks_like_metaimage(path: str | os.PathLike) -> bool:
    """True if the file starts like a MetaImage header (``NDims`` and an element/object type)."""
    with open(path, "rb") as f:
        head = f.read(4096)
    return b"NDims" in head and (b"ElementType" in head or b"ObjectType" in head)


def looks_like_nrrd(path: str | os.PathLike) -> bool:
    """True if the file starts with the NRRD magic."""
    with open(path, "rb") as f:
        return f.read(4) == b"NRRD"


def _gzip_size(path: Path, expected: int) -> int:
    """Uncompressed size of a gzip file; raises EOFError if the stream is truncated.

    Cheap when the gzip trailer (ISIZE, size mod 2**32) already says ``expected``; otherwise
    decompresses to the end to find out exactly.
    """
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        isize = struct.unpack("<I", f.read(4))[0]
    if isize == expected % 2**32:
        return expected
    with gzip.open(path, "rb") as g:
        return g.seek(0, os.SEEK_END)


def nifti_truncation(path: str | os.PathLike) -> str | None:
    """None if a NIfTI-1 file holds all the voxels its header announces, else the problem."""
    p = Path(path)
    found = nifti1_header(p)
    if found is None:
        return None  # not NIfTI-1: SimpleITK will say what it is
    order, head = found
    dims = struct.unpack(order + "8h", head[40:56])
    bitpix = struct.unpack(order + "h", head[72:74])[0]
    vox_offset = struct.unpack(order + "f", head[108:112])[0]
    n = int(np.prod([max(d, 1) for d in dims[1 : 1 + max(1, min(dims[0], 7))]], dtype=np.int64))
    if head[344:348] == b"ni1\x00":  # header/image pair: voxels live in the .img file
        return None
    needed = int(vox_offset) + n * max(bitpix, 8) // 8
    try:
        have = _gzip_size(p, needed) if p.name.lower().endswith(".gz") else p.stat().st_size
    except (EOFError, OSError, zlib.error) as exc:
        return f"the compressed data ends early ({exc})"
    if have < needed:
        return f"it holds {have} bytes but its header announces {needed}"
    return None


def metaimage_missing_data(path: str | os.PathLike) -> str | None:
    """For a ``.mhd`` header: the name of its voxel file if that file is missing, else None."""
    p = Path(path)
    if not p.name.lower().endswith(".mhd"):
        return None
    try:
        head = p.read_bytes()[:65536].decode("latin-1")
    except OSError:
        return None
    for line in head.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ElementDataFile":
            name = value.strip()
            if name.upper() in ("LOCAL", "LIST") or "%" in name:
                return None
            return None if (p.parent / name).exists() else name
    return None
