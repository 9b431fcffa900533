"""Byte sniffing of DICOM files in pure Python (no SimpleITK; never raise).

Used by napari's reader probe (``get_reader``) and by the folder scan before GDCM parses headers:

* ``is_dicom_file``: the Part 10 preamble (``b"DICM"`` at byte 128), whatever the file's name;
* ``looks_like_raw_dicom``: a cheap tag probe for data sets written without the preamble;
* ``looks_like_dicom_image`` / ``has_pixel_data``: a Part 10 file with pixel data;
* ``is_dicomdir``: a DICOMDIR (Media Storage Directory) file;
* ``peek_dataset`` / ``describe_dataset``: modality and SOP class, for messages (pydicom is
  imported only when these are called).
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

_PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010) LE and BE
_DEFLATED_TS = b"1.2.840.10008.1.2.1.99"
DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
NATIVE_TRANSFER_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
NON_IMAGE_MODALITIES = {"RTSTRUCT", "RTPLAN", "SR", "KO", "PR", "ECG", "REG", "RWV"}


# ----------------------------------------------------------------------------------------------
# byte sniffing (cheap, never raises)
# ----------------------------------------------------------------------------------------------
def is_dicom_file(path: str | os.PathLike) -> bool:
    """True if the file has the DICOM Part 10 preamble (``b"DICM"`` at byte 128)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def has_pixel_data(path: str | os.PathLike) -> bool:
    """True if the file contains a Pixel Data element tag (7FE0,0010) in either byte order.

    Deflated data sets hide their tags, so they count as having pixel data.
    """
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            if m.find(_DEFLATED_TS, 132, 4096) >= 0:
                return True
            return any(m.find(tag, 132) >= 0 for tag in _PIXEL_DATA_TAGS)
    except (OSError, ValueError):
        return False


def looks_like_dicom_image(path: str | os.PathLike) -> bool:
    """A DICOM Part 10 file with pixel data (RT structures, SR, plans and waveforms have none)."""
    return is_dicom_file(path) and has_pixel_data(path)


def is_dicomdir(path: str | os.PathLike) -> bool:
    """True for a DICOMDIR: a Part 10 file whose Media Storage SOP Class (0002,0002) is the
    Media Storage Directory, whatever the file is called."""
    try:
        with open(path, "rb") as f:
            data = f.read(1024)
    except OSError:
        return False
    return data[128:132] == b"DICM" and _parse_head(data).get(_TAG_MEDIA_SOP) == DICOMDIR_SOP_CLASS


def looks_like_raw_dicom(path: str | os.PathLike) -> bool:
    """A DICOM data set written without the Part 10 preamble (no ``DICM`` at byte 128): its first
    element is in group 0002 or 0008 and the first elements parse to a SOP class or modality."""
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError:
        return False
    if len(data) < 16 or data[128:132] == b"DICM":
        return False
    if data[:2] not in (b"\x08\x00", b"\x00\x08", b"\x02\x00"):
        return False
    head = _parse_head(data)
    return bool(head.get(_TAG_SOP_CLASS) or head.get(_TAG_MODALITY))


def transfer_syntax(path: str | os.PathLike) -> str:
    """Transfer Syntax UID (0002,0010) of a Part 10 file, '' if unknown. Never raises."""
    try:
        with open(path, "rb") as f:
            return _parse_head(f.read(4096)).get(_TAG_TS, "")
    except OSError:
        return ""


# ----------------------------------------------------------------------------------------------
# what a non-image DICOM is (for messages; never raises)
# ----------------------------------------------------------------------------------------------
_MODALITY_KINDS = {
    "RTSTRUCT": "an RT structure set",
    "RTPLAN": "an RT plan",
    "RTRECORD": "an RT treatment record",
    "SR": "a structured report",
    "KO": "a key object selection",
    "PR": "a presentation state",
    "ECG": "an ECG waveform",
    "HD": "a waveform",
    "REG": "a registration",
    "RWV": "a real world value map",
    "DOC": "an encapsulated document",
}
_SOP_CLASS_KINDS = (  # prefixes of SOP Class UIDs of non-image storage classes
    ("1.2.840.10008.5.1.4.1.1.481.3", "an RT structure set"),
    ("1.2.840.10008.5.1.4.1.1.481.5", "an RT plan"),
    ("1.2.840.10008.5.1.4.1.1.481.8", "an RT plan"),
    ("1.2.840.10008.5.1.4.1.1.88.59", "a key object selection"),
    ("1.2.840.10008.5.1.4.1.1.88.", "a structured report"),
    ("1.2.840.10008.5.1.4.1.1.9.", "a waveform"),
    ("1.2.840.10008.5.1.4.1.1.11.", "a presentation state"),
    ("1.2.840.10008.5.1.4.1.1.66", "a registration or segmentation object"),
    ("1.2.840.10008.5.1.4.1.1.104.", "an encapsulated document"),
)
_TAG_SOP_CLASS, _TAG_MODALITY, _TAG_TS = 0x00080016, 0x00080060, 0x00020010
_TAG_MEDIA_SOP = 0x00020002
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"}
_LONG_VRS |= {b"UT", b"UV"}


def _parse_head(data: bytes) -> dict[int, str]:
    """Values of (0002,0002), (0002,0010), (0008,0016) and (0008,0060) from the start of a
    DICOM data set, with or without the 128-byte preamble; implicit or explicit VR, little or
    big endian.

    A minimal reader for messages only: it stops at the first undefined length, deflated data,
    anything odd, or past (0008,0060). Never raises.
    """
    out: dict[int, str] = {}
    pos = 132 if data[128:132] == b"DICM" else 0
    endian, explicit = "<", True
    in_meta = data[pos : pos + 2] == b"\x02\x00"
    if not in_meta:  # no file meta: guess the encoding from the first element
        if data[pos : pos + 2] == b"\x00\x08":
            endian = ">"
        explicit = data[pos + 4 : pos + 6].isalpha() and data[pos + 4 : pos + 6].isupper()
    try:
        while pos + 8 <= len(data):
            group = int.from_bytes(
                data[pos : pos + 2], "little" if in_meta or endian == "<" else "big"
            )
            if in_meta and group != 0x0002:  # end of the meta group: switch to the data set
                in_meta = False
                ts = out.get(_TAG_TS, "")
                if ts.startswith("1.2.840.10008.1.2.1.99"):
                    return out  # deflated
                endian = ">" if ts == "1.2.840.10008.1.2.2" else "<"
                explicit = ts != "1.2.840.10008.1.2"
                continue
            order = "little" if in_meta or endian == "<" else "big"
            group = int.from_bytes(data[pos : pos + 2], order)
            elem = int.from_bytes(data[pos + 2 : pos + 4], order)
            tag = group << 16 | elem
            if tag > _TAG_MODALITY:
                return out
            vr = data[pos + 4 : pos + 6]
            if in_meta or explicit:
                if vr in _LONG_VRS:
                    length = int.from_bytes(data[pos + 8 : pos + 12], order)
                    pos += 12
                else:
                    length = int.from_bytes(data[pos + 6 : pos + 8], order)
                    pos += 8
            else:
                length = int.from_bytes(data[pos + 4 : pos + 8], order)
                pos += 8
            if length == 0xFFFFFFFF or pos + length > len(data):
                return out
            if tag in (_TAG_TS, _TAG_SOP_CLASS, _TAG_MODALITY, _TAG_MEDIA_SOP):
                out[tag] = data[pos : pos + length].decode("ascii", "replace").strip(" \x00")
            pos += length
    except Exception:
        pass
    return out


def peek_dataset(path: str | os.PathLike) -> tuple[str, str]:
    """``(Modality, SOP Class UID)`` of a DICOM data set, ``("", "")`` if unknown. Never raises.

    Uses pydicom when it is installed (it reads files without the 'DICM' preamble too), else a
    minimal pure-Python reader of the first elements (GDCM in SimpleITK refuses non-image files).
    """
    try:
        import pydicom
    except Exception:
        pydicom = None
    if pydicom is not None:
        try:
            ds = pydicom.dcmread(
                str(path),
                force=True,
                stop_before_pixels=True,
                specific_tags=["Modality", "SOPClassUID"],
            )
            modality = str(ds.get("Modality", "") or "").strip()
            sop = str(ds.get("SOPClassUID", "") or "").strip()
            if modality or sop:
                return modality, sop
        except Exception:
            pass
    try:
        with open(path, "rb") as f:
            head = _parse_head(f.read(65536))
    except OSError:
        return "", ""
    return head.get(_TAG_MODALITY, ""), head.get(_TAG_SOP_CLASS, "")


def non_image_kind(modality: str, sop_class: str = "") -> str | None:
    """'an RT structure set' etc. for a non-image Modality or SOP Class UID, else None."""
    kind = _MODALITY_KINDS.get(modality.strip().upper())
    if kind:
        return kind
    for prefix, name in _SOP_CLASS_KINDS:
        if sop_class.startswith(prefix):
            return name
    return None


def describe_dataset(path: str | os.PathLike) -> tuple[str | None, str]:
    """``(kind, label)``: kind as ``non_image_kind`` (None for images or unknown) and a label
    such as ``"Modality RTSTRUCT"`` (empty if nothing could be read). Never raises."""
    modality, sop = peek_dataset(path)
    label = f"Modality {modality}" if modality else (f"SOP Class {sop}" if sop else "")
    return non_image_kind(modality, sop), label


def _file_contains(path: str | os.PathLike, needle: bytes) -> bool:
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(needle) >= 0
    except (OSError, ValueError):
        return False


def folder_files(folder: str | os.PathLike) -> list[Path]:
    """Regular, non-hidden files directly inside ``folder``, sorted by name."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for e in entries:
        try:
            if not e.name.startswith(".") and e.is_file():
                out.append(Path(e.path))
        except OSError:
            continue
    return out
