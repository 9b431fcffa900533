"""DICOM probing, series discovery and series reading.

* ``is_dicom_file`` / ``has_pixel_data`` / ``looks_like_dicom_image``: byte sniffing in pure
  Python (no SimpleITK, never raise), used by napari's reader probe.
* ``scan_folder``: every DICOM image file of a folder (not recursive) grouped into series by
  Series Instance UID (0020|000e), headers read with GDCM (``ReadImageInformation``); files GDCM
  cannot parse are skipped and counted, so one bad file does not hide a good series.
* ``series_of_file``: the series a single file belongs to, found among its folder's files.
* ``read_series``: reads a series sorted along the slice normal, refuses mixed stacks, and warns
  (``GeometryWarning``) when slice positions do not fit a regular grid or a multi-frame file
  may carry incomplete geometry.
"""

from __future__ import annotations

import mmap
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DicomSeriesError, GeometryWarning, UnreadableImageError, sitk_reason

_PIXEL_DATA_TAGS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10")  # (7FE0,0010) LE and BE
_DEFLATED_TS = b"1.2.840.10008.1.2.1.99"
_NON_IMAGE_MODALITIES = {"RTSTRUCT", "RTPLAN", "SR", "KO", "PR", "ECG", "REG", "RWV"}


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
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"}
_LONG_VRS |= {b"UT", b"UV"}


def _parse_head(data: bytes) -> dict[int, str]:
    """Values of (0002,0010), (0008,0016) and (0008,0060) from the start of a DICOM data set,
    with or without the 128-byte preamble; implicit or explicit VR, little or big endian.

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
            if tag in (_TAG_TS, _TAG_SOP_CLASS, _TAG_MODALITY):
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


# ----------------------------------------------------------------------------------------------
# headers
# ----------------------------------------------------------------------------------------------
def _floats(text: str | None, n: int) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        vals = tuple(float(v) for v in text.strip().split("\\"))
    except ValueError:
        return None
    return vals if len(vals) == n else None


def _int(text: str | None) -> int | None:
    try:
        return int(float(text.strip())) if text and text.strip() else None
    except ValueError:
        return None


@dataclass(frozen=True)
class SliceInfo:
    """Header facts of one DICOM image file, in SimpleITK (x, y, z) order."""

    path: str
    series_uid: str
    size: tuple[int, ...]
    components: int
    position: tuple[float, ...] | None  # Image Position (Patient) of the first frame
    orientation: tuple[float, ...] | None  # Image Orientation (Patient), row then column
    instance: int | None
    modality: str = ""
    description: str = ""
    series_number: str = ""
    sop_uid: str = ""

    @property
    def frames(self) -> int:
        return self.size[2] if len(self.size) > 2 else 1

    @property
    def normal(self) -> np.ndarray | None:
        if self.orientation is None:
            return None
        return np.cross(self.orientation[:3], self.orientation[3:])


def read_slice_info(path: str | os.PathLike) -> SliceInfo:
    """Header of one DICOM file via GDCM; ``UnreadableImageError`` if GDCM cannot parse it."""
    import SimpleITK as sitk

    r = sitk.ImageFileReader()
    r.SetImageIO("GDCMImageIO")
    r.SetFileName(str(path))
    try:
        r.ReadImageInformation()
    except RuntimeError as exc:
        raise UnreadableImageError(
            f"Could not read the DICOM file {path}: {sitk_reason(exc)}.",
            "The file may be truncated, damaged, or not an image (RT structure set, report); "
            "open the image series instead.",
        ) from exc

    def tag(key: str) -> str:
        return r.GetMetaData(key).strip() if r.HasMetaDataKey(key) else ""

    return SliceInfo(
        path=str(path),
        series_uid=tag("0020|000e").rstrip("\x00"),
        size=tuple(r.GetSize()),
        components=r.GetNumberOfComponents(),
        position=_floats(tag("0020|0032"), 3),
        orientation=_floats(tag("0020|0037"), 6),
        instance=_int(tag("0020|0013")),
        modality=tag("0008|0060"),
        description=tag("0008|103e"),
        series_number=tag("0020|0011"),
        sop_uid=tag("0008|0018").rstrip("\x00"),
    )


# ----------------------------------------------------------------------------------------------
# series
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series: its files sorted along the slice normal (or by instance number)."""

    uid: str
    slices: tuple[SliceInfo, ...]
    duplicates: tuple[str, ...] = ()  # files skipped as copies of an already listed SOP instance

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(s.path for s in self.slices)

    @property
    def n_slices(self) -> int:
        """Number of 2D slices: files, or frames for a multi-frame file."""
        return sum(s.frames for s in self.slices)

    @property
    def modality(self) -> str:
        return self.slices[0].modality

    @property
    def description(self) -> str:
        return " ".join(self.slices[0].description.split())

    @property
    def series_number(self) -> str:
        return self.slices[0].series_number

    def summary(self) -> str:
        """One line for a notification, e.g. ``MR #700 'T1 AX': 7 files, 16 x 16, UID 1.2...``."""
        parts = [self.modality or "DICOM"]
        if self.series_number:
            parts.append(f"#{self.series_number}")
        if self.description:
            parts.append(f"'{self.description}'")
        x, y = self.slices[0].size[:2]
        n = len(self.slices)
        count = f"{n} file{'s' if n != 1 else ''}"
        if self.n_slices != n:
            count += f" ({self.n_slices} frames)"
        return f"{' '.join(parts)}: {count}, {x} x {y}, UID {self.uid}"


def _sort_key_fn(slices: Sequence[SliceInfo]) -> Any:
    ref = next((s.normal for s in slices if s.normal is not None), None)
    if ref is not None and all(s.position is not None for s in slices):
        return lambda s: (float(np.dot(s.position, ref)), s.instance or 0, s.path)
    return lambda s: (s.instance if s.instance is not None else 0, s.path)


def _make_series(uid: str, slices: Sequence[SliceInfo]) -> SeriesInfo:
    """Sort slices; keep the first file of each SOP Instance UID (others are copies, e.g. the
    same image in another transfer syntax)."""
    kept: dict[str, SliceInfo] = {}
    dups = []
    for s in slices:
        key = s.sop_uid or s.path
        if key in kept:
            dups.append(s.path)
        else:
            kept[key] = s
    ordered = sorted(kept.values(), key=_sort_key_fn(list(kept.values())))
    return SeriesInfo(uid, tuple(ordered), tuple(dups))


def _group(slices: Iterable[SliceInfo]) -> list[SeriesInfo]:
    by_uid: dict[str, list[SliceInfo]] = {}
    for s in slices:
        by_uid.setdefault(s.series_uid, []).append(s)
    out = [_make_series(uid, ss) for uid, ss in by_uid.items()]
    return sorted(out, key=lambda s: (-s.n_slices, _int(s.series_number) or 0, s.uid))


def scan_folder(folder: str | os.PathLike) -> tuple[list[SeriesInfo], list[str]]:
    """Image series in ``folder`` (not recursive), most slices first, and the DICOM files skipped.

    Only files with the DICOM preamble and pixel data are parsed; files GDCM cannot parse or
    with a non-image modality are returned as skipped, named with the reason.
    """
    slices, skipped = [], []
    for p in folder_files(folder):
        if not looks_like_dicom_image(p):
            continue
        try:
            info = read_slice_info(p)
        except UnreadableImageError as exc:
            skipped.append(f"{p.name} ({exc.problem.split(': ', 1)[-1].rstrip('.')})")
            continue
        if info.modality.upper() in _NON_IMAGE_MODALITIES:
            skipped.append(f"{p.name} (modality {info.modality})")
            continue
        slices.append(info)
    return _group(slices), skipped


def series_of_file(path: str | os.PathLike) -> SeriesInfo:
    """The whole series ``path`` belongs to, from the files next to it (same 0020|000e).

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
    return _make_series(info.series_uid, found)


def series_from_files(paths: Sequence[str | os.PathLike]) -> SeriesInfo:
    """One series from an explicit list of DICOM files; refuses lists that mix series."""
    slices = [read_slice_info(p) for p in paths]
    groups = _group(slices)
    if len(groups) > 1:
        listing = "; ".join(g.summary() for g in groups)
        raise DicomSeriesError(
            f"Mixed stack: the {len(slices)} files belong to {len(groups)} different DICOM "
            f"series ({listing}).",
            "Open one series at a time: its folder, or one file of it.",
        )
    return groups[0]


def choose_series(
    series: Sequence[SeriesInfo], uid: str | None = None
) -> tuple[SeriesInfo, tuple[SeriesInfo, ...]]:
    """The series with ``uid``, or the one with the most slices; and the others."""
    if not series:
        raise DicomSeriesError("No DICOM image series found.", "Open a folder with image slices.")
    if uid is None:
        chosen = series[0]
    else:
        match = [s for s in series if s.uid == uid.strip()]
        if not match:
            listing = "; ".join(s.summary() for s in series)
            raise DicomSeriesError(
                f"Series UID {uid} is not in this folder.", f"Available series: {listing}."
            )
        chosen = match[0]
    return chosen, tuple(s for s in series if s is not chosen)


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def _unique_rows(rows: Sequence[Sequence[float]], tol: float = 1e-3) -> list[Sequence[float]]:
    out: list[Sequence[float]] = []
    for r in rows:
        if not any(np.max(np.abs(np.subtract(r, u))) <= tol for u in out):
            out.append(r)
    return out


def check_stack(series: SeriesInfo) -> None:
    """Refuse a series whose files cannot form one regular volume (a 'mixed stack')."""
    slices = series.slices
    name = series.summary()
    hint = "Open a folder that holds only this series' slices, or pick another series."
    sizes = sorted({s.size[:2] for s in slices})
    if len(sizes) > 1:
        shown = ", ".join(f"{x} x {y}" for x, y in sizes)
        raise DicomSeriesError(f"Mixed stack in series {name}: slice sizes differ ({shown}).", hint)
    if len({s.components for s in slices}) > 1:
        raise DicomSeriesError(f"Mixed stack in series {name}: colour and grey slices.", hint)
    multi = [s for s in slices if s.frames > 1]
    if multi and len(slices) > 1:
        raise DicomSeriesError(
            f"Series {name} mixes {len(multi)} multi-frame file(s) with other files.",
            "Open one multi-frame file at a time.",
        )
    orients = [s.orientation for s in slices if s.orientation is not None]
    if orients and np.max(np.abs(np.asarray(orients) - orients[0])) > 1e-3:
        raise DicomSeriesError(
            f"Mixed stack in series {name}: slices lie in {len(_unique_rows(orients))} different "
            "planes (projections, a localiser or several stacks in one series), so they do not "
            "form one 3D volume.",
            hint + " One file on its own opens as a single slice.",
        )
    normal = slices[0].normal
    if normal is not None and len(slices) > 1 and all(s.position is not None for s in slices):
        depth = np.array([np.dot(s.position, normal) for s in slices])
        gaps = np.diff(depth)
        if np.any(gaps < 1e-3):
            n_pos = len(np.unique(np.round(depth, 3)))
            raise DicomSeriesError(
                f"Mixed stack in series {name}: {len(slices)} files at only {n_pos} distinct "
                "slice positions (several echoes, phases or time points in one series?).",
                "Split the series by echo or time point (e.g. into separate folders) and open one.",
            )


def _check_positions(img: Any, series: SeriesInfo) -> None:
    """Warn if the files' slice positions do not lie on the regular grid ITK built."""
    slices = series.slices
    if len(slices) < 2 or any(s.position is None for s in slices):
        return
    expected = np.array([img.TransformIndexToPhysicalPoint((0, 0, k)) for k in range(len(slices))])
    actual = np.array([s.position for s in slices])
    dev = np.linalg.norm(actual - expected, axis=1)
    k = int(np.argmax(dev))
    dz = img.GetSpacing()[2]
    if dev[k] > max(0.01, 0.01 * dz):
        warnings.warn(
            f"Uneven DICOM slice positions in series {series.summary()}: slice {k} lies "
            f"{dev[k]:.3g} mm from where the regular volume grid (slice spacing {dz:.4g} mm) "
            "places it. Slices may be missing or unevenly spaced, or the stack is tilted (gantry "
            "tilt); distances across slices are approximate. Resample the series to a regular "
            "grid before measuring.",
            GeometryWarning,
            stacklevel=3,
        )


def read_series(series: SeriesInfo) -> Any:
    """Read a series as a ``SimpleITK.Image`` (3D). Checks the stack first, warns on geometry."""
    import SimpleITK as sitk

    check_stack(series)
    files = list(series.files)
    try:
        if len(files) == 1:
            img = sitk.ReadImage(files[0], imageIO="GDCMImageIO")
        else:
            r = sitk.ImageSeriesReader()
            r.SetImageIO("GDCMImageIO")
            r.SetFileNames(files)
            img = r.Execute()
    except RuntimeError as exc:
        raise UnreadableImageError(
            f"Could not decode DICOM series {series.summary()}: {sitk_reason(exc)}.",
            "The files may be damaged or use a compression GDCM cannot decode; re-export the "
            "series uncompressed (e.g. 'gdcmconv --raw').",
        ) from exc
    if len(files) > 1:
        _check_positions(img, series)
    elif series.slices[0].frames > 1:
        warnings.warn(
            f"Multi-frame DICOM ({series.slices[0].frames} frames in one file, "
            f"{series.summary()}): SimpleITK takes one origin, orientation and slice spacing "
            f"({img.GetSpacing()[2]:.4g} mm) for all frames and may miss per-frame positions "
            "(SimpleITK issue 440), so the geometry may be incomplete. Check it against the "
            "scanner's values before measuring distances.",
            GeometryWarning,
            stacklevel=2,
        )
    return img
