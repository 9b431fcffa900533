"""Reading the NPZ contract (README, "NPZ contract") into a :class:`SegmentationSet`.

Arrays are loaded with ``allow_pickle=False``: an NPZ can never execute code. Before any array
is loaded, :func:`check_npz_members` reads every member's ``.npy`` header and refuses arrays
whose claimed size is more than the member holds (a forged or damaged header) or more than the
memory available, so a 22-byte header claiming terabytes is one line of error, not a crash.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .conformal.dataset import SegmentationSet
from .conformal.errors import ConformalInputError


class ContractError(ConformalInputError):
    """The file is missing, unreadable or does not follow the NPZ contract."""


def available_memory() -> int | None:
    """Bytes of memory available now (Linux/macOS ``sysconf``), or None when unknown."""
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return int(pages) * int(size) if pages > 0 and size > 0 else None


def check_npz_members(path: str | Path, error: type[Exception] = ContractError) -> dict:
    """``{name: (shape, dtype)}`` of every array of an NPZ, from the headers only.

    Raises ``error`` for a member that is not a ``.npy`` array, an object (pickle) array, a
    header claiming more bytes than the member holds, or arrays larger in total than the
    memory available now.
    """
    path = Path(path)
    out: dict = {}
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with zf.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(f)
                    header_len = f.tell()
                if dtype.hasobject:
                    raise error(f"{path}: array {name!r} holds Python objects (would need pickle)")
                nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if nbytes > info.file_size - header_len:
                    raise error(
                        f"{path}: array {name!r} claims shape {shape} ({nbytes:,} bytes) but holds "
                        f"{max(info.file_size - header_len, 0):,} bytes; the file is damaged or "
                        "forged"
                    )
                total += nbytes
                out[name] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, error):
            raise
        raise error(f"{path}: not a readable NPZ file ({exc})") from None
    free = available_memory()
    if free is not None and total > free:
        raise error(
            f"{path}: its arrays need {total / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB "
            "of memory is available"
        )
    return out


def load_segmentation_set(path: str | Path) -> SegmentationSet:
    """Load ``samples``, ``masks`` and optional ``images`` from an NPZ file and validate them."""
    path = Path(path)
    if not path.is_file():
        what = "not a regular file" if path.exists() else "no such file"
        raise ContractError(f"{path}: {what}")
    if not zipfile.is_zipfile(path):
        raise ContractError(f"{path}: not a readable NPZ file (np.savez writes one)")
    members = check_npz_members(path)
    for key in ("samples", "masks", "images"):
        if key in members and not (
            np.issubdtype(members[key][1], np.number) or members[key][1] == np.bool_
        ):
            raise ContractError(
                f"{path}: array {key!r} holds {members[key][1]} values; numbers are needed"
            )
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("samples", "masks") if k not in npz.files]
            if missing:
                raise ContractError(
                    f"{path}: missing array(s) {', '.join(missing)}; an NPZ needs 'samples' "
                    "(n, N_s, H, W) and 'masks' (n, H, W), optionally 'images'"
                )
            arrays = {k: npz[k] for k in ("samples", "masks", "images") if k in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ContractError(f"{path}: not a readable NPZ file ({exc})") from None
    except ValueError as exc:  # object arrays would need pickle
        raise ContractError(f"{path}: unsupported NPZ content ({exc})") from None
    try:
        return SegmentationSet.from_samples(**arrays)
    except ConformalInputError as exc:
        raise ContractError(f"{path}: {exc}") from None
