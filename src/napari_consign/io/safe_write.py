"""Writing outputs without ever losing a file: target checks and atomic, verified writes.

Two promises, kept for every file this program writes (band NIfTI, bundles, sample NPZ,
JSON/Markdown reports, the napari writer hook):

* **Nothing of the user's is replaced.** :func:`check_target` refuses a target that is an input
  of the run (same file), a folder or special file (FIFO, device), and, even with
  ``overwrite``, any existing file that is not an earlier output of the same kind: the kind is
  found by reading the file's content (NIfTI/DICOM/MetaImage/NRRD headers, the NPZ members of a
  bundle or a sample file, the marker this program puts in its reports and band files), never
  by its name.
* **No file at a final name unless complete.** :func:`write_atomically` writes to a hidden
  temporary file in the target's folder (created with the usual umask, e.g. 0644), flushes it
  to disk, checks its size and re-reads it with a verifier (ITK's NIfTI writer does *not* raise
  on a short write: it only prints ``NWAD: wrote only ...``), then publishes it with one atomic
  rename, or, when the target must not exist, with a hard link that fails if another run
  created it meanwhile. Any failure (full disk, permissions, Ctrl-C) removes the temporary
  file; a temporary file left by a killed process is removed by the next write to that name.

Errors are :class:`OutputError` (a :class:`~napari_consign.io.errors.ConsignIOError`): one line
that says what happened and what to do.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import secrets
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import ConsignIOError

#: What this program writes into the NIfTI ``descrip`` field of band and label files.
NIFTI_MARKER = "napari-consign"
#: Key of the marker in JSON reports, and the first line of Markdown reports.
REPORT_KEY = "written_by"
MARKDOWN_MARKER = "<!-- written by napari-consign -->"

#: Output kinds :func:`check_target` knows, and which existing content each may replace.
KINDS = ("bands", "labels", "bundle", "samples", "report", "plot")
_REPLACEABLE = {
    "bands": {"napari-nifti"},
    "labels": {"napari-nifti", "nifti"},  # the napari Save dialog already asked the user
    "bundle": {"bundle"},
    "samples": {"samples"},
    "report": {"report"},
    "plot": {"png"},
}
_WHAT = {
    "nifti": "a NIfTI scan",
    "napari-nifti": "a band/label file of napari-consign",
    "dicom": "a DICOM file",
    "image": "a MetaImage/NRRD scan",
    "bundle": "a calibration bundle",
    "samples": "a sample file (NPZ)",
    "npz": "an NPZ/zip archive",
    "report": "a napari-consign report",
    "png": "a PNG image",
    "text": "a text file not written by napari-consign",
    "other": "a file not written by napari-consign",
    "empty": "an empty file",
}
_TEMP = re.compile(r"^\.(?P<name>.+)\.consign-(?P<pid>\d+)-[0-9a-f]+\.tmp")


class OutputError(ConsignIOError):
    """An output was refused (it would replace something) or could not be written completely."""


# --------------------------------------------------------------------------- sniffing


def _head(path: Path, n: int = 4096) -> bytes:
    """The first ``n`` bytes of ``path``, decompressed when it is gzip; b"" if unreadable."""
    try:
        with open(path, "rb") as f:
            raw = f.read(n)
        if raw[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as g:
                return g.read(n)
        return raw
    except (OSError, EOFError, zlib.error):
        return b""


def sniff(path: str | os.PathLike) -> str:
    """What an existing regular file holds, from its content: one of the keys of ``_WHAT``."""
    p = Path(path)
    head = _head(p)
    if not head:
        return "empty" if p.stat().st_size == 0 else "other"
    if head[4:8] == b"n+2\x00":
        return "nifti"  # NIfTI-2: never written by this program
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        descrip = head[148:228].split(b"\x00", 1)[0].decode("latin-1")
        return "napari-nifti" if descrip.startswith(NIFTI_MARKER) else "nifti"
    if head[128:132] == b"DICM":
        return "dicom"
    if head[:4] == b"NRRD" or (b"NDims" in head and b"ObjectType" in head):
        return "image"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] == b"PK\x03\x04" or zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as zf:
                names = set(zf.namelist())
        except (zipfile.BadZipFile, OSError):
            return "npz"
        if "__bundle__.npy" in names:
            return "bundle"
        if {"samples.npy", "model_identity.npy"} <= names:
            return "samples"
        return "npz"
    if _is_report(p, head):
        return "report"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "other"
    return "text"


def _is_report(p: Path, head: bytes) -> bool:
    if head.startswith(MARKDOWN_MARKER.encode()):
        return True
    if not head.lstrip().startswith(b"{"):
        return False
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get(REPORT_KEY, "")).startswith("napari-consign")


# --------------------------------------------------------------------------- target checks


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_target(
    path: str | os.PathLike,
    kind: str,
    *,
    inputs: Iterable[str | os.PathLike] = (),
    overwrite: bool = False,
    flag: str = "--overwrite",
) -> Path:
    """Refuse ``path`` unless writing an output of ``kind`` there loses nothing.

    Refused always: an input of the run (the same file, through any link), a folder, a FIFO or
    other special file, a missing or unwritable folder. An existing file is replaced only with
    ``overwrite`` and only when its content is an earlier output of the same ``kind``
    (``KINDS``). Returns ``path`` as a :class:`Path`.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    p = Path(path)
    for source in inputs:
        if os.path.lexists(p) and os.path.exists(source) and _same(p, Path(source)):
            raise OutputError(
                f"{p} is an input of this run: inputs are never overwritten (not even with "
                "--overwrite).",
                "Choose another output name.",
            )
    parent = p.parent
    if not parent.is_dir():
        raise OutputError(f"The folder {parent} does not exist.", "Create it or choose another.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"The folder {parent} is not writable.", "Choose another folder.")
    if not os.path.lexists(p):
        return p
    mode = os.stat(p).st_mode if os.path.exists(p) else 0
    if stat.S_ISDIR(mode):
        raise OutputError(f"{p} is a folder.", "Give a file name.")
    if not stat.S_ISREG(mode):
        raise OutputError(f"{p} is not a regular file (a FIFO, device or broken link).",
                          "Choose another output name.")  # fmt: skip
    found = sniff(p)
    if found in _REPLACEABLE[kind] or (found == "empty" and overwrite):
        if overwrite:
            return p
        raise OutputError(f"{p} exists.", f"Pass {flag} to replace it, or choose another name.")
    raise OutputError(
        f"{p} exists and is {_WHAT.get(found, found)}; it is never replaced"
        + (" (even with --overwrite)." if overwrite else "."),
        "Choose another output name.",
    )


# --------------------------------------------------------------------------- atomic writes


def _temp_suffix(name: str) -> str:
    low = name.lower()
    for double in (".nii.gz", ".tar.gz"):
        if low.endswith(double):
            return name[-len(double) :]
    return Path(name).suffix


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path: Path) -> None:
    """Remove temporary files of ``path`` left by processes that no longer run."""
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and m["name"] == path.name and not _alive(int(m["pid"])):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _fsync(path: str | os.PathLike, directory: bool = False) -> None:
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "permission denied (read-only folder or file system?)"
    return exc.strerror or str(exc)


def write_atomically(
    path: str | os.PathLike,
    write: Callable[[Path], None],
    verify: Callable[[Path], None] | None = None,
    *,
    replace: bool = False,
) -> Path:
    """Write ``path`` through ``write(temp)`` and publish it only once complete and verified.

    ``write`` writes the whole file at the temporary path it is given (same folder and suffix);
    ``verify`` re-reads it and raises (any exception) if it is not what was meant to be
    written. ``replace``: an existing ``path`` may be replaced (the caller has checked it with
    :func:`check_target`); otherwise publishing fails if ``path`` appeared meanwhile.
    """
    p = Path(path)
    remove_stale_temps(p)
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = p.parent / f".{p.name}.consign-{token}.tmp{_temp_suffix(p.name)}"
    try:
        with open(tmp, "xb"):  # created with the process umask, like any other file
            pass
        write(tmp)
        _fsync(tmp)
        if os.path.getsize(tmp) == 0:
            raise OutputError(f"Could not write {p}: nothing was written (is the disk full?).")
        if verify is not None:
            try:
                verify(tmp)
            except OutputError:
                raise
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [""])[0][:160]
                raise OutputError(
                    f"Could not write {p} completely: re-reading it failed "
                    f"({type(exc).__name__}: {first}).",
                    "Is the disk full? Free space and run again; nothing was replaced.",
                ) from None
        _publish(tmp, p, replace)
    except OSError as exc:
        raise OutputError(
            f"Could not write {p}: {_reason(exc)}.", "Nothing was written or replaced."
        ) from None
    finally:
        if os.path.lexists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
    _fsync(p.parent, directory=True)
    return p


def _publish(tmp: Path, p: Path, replace: bool) -> None:
    if replace:
        os.replace(tmp, p)
        return
    try:
        os.link(tmp, p)  # atomic and never replaces: fails if another run created ``p``
    except FileExistsError:
        raise OutputError(
            f"{p} was created by someone else while this run wrote it (two runs into one "
            "folder?); it was left as it is.",
            "Run again with another output name.",
        ) from None
    except OSError:  # file systems without hard links
        if os.path.lexists(p):
            raise OutputError(f"{p} exists.", "Choose another output name.") from None
        os.replace(tmp, p)


def write_text(path: str | os.PathLike, text: str, *, replace: bool = False) -> Path:
    """Write ``text`` (UTF-8) atomically; verified by reading it back."""
    data = text.encode("utf-8")

    def verify(tmp: Path) -> None:
        if tmp.read_bytes() != data:
            raise OutputError(f"Could not write {path} completely (is the disk full?).")

    return write_atomically(path, lambda tmp: tmp.write_bytes(data), verify, replace=replace)


def write_npz(path: str | os.PathLike, arrays: dict, *, replace: bool = False) -> Path:
    """Write ``arrays`` as a compressed NPZ atomically; verified by re-loading every array."""
    import numpy as np

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    def verify(tmp: Path) -> None:
        with np.load(tmp, allow_pickle=False) as z:
            if sorted(z.files) != sorted(arrays):
                raise ValueError("the archive lacks arrays")
            for key, value in arrays.items():
                got = z[key]  # reading checks the zip CRC of every member
                want = np.asarray(value)
                if got.shape != want.shape or got.dtype != want.dtype:
                    raise ValueError(f"array {key} reads back as {got.dtype}{got.shape}")

    return write_atomically(path, write, verify, replace=replace)
