"""Header facts of one DICOM image file, read with GDCM (``ReadImageInformation``: no pixels)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import UnreadableImageError, sitk_reason
from .sniff import transfer_syntax

# tags that tell apart images sharing one slice position inside a series (echoes, phases...)
SUBSERIES_TAGS = {
    "0018|0086": "echo number",
    "0020|0100": "temporal position",
    "0018|1060": "trigger time",
    "0020|0012": "acquisition number",
    "0008|0008": "image type",
}


def _floats(text: str | None, n: int) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        vals = tuple(float(v) for v in text.strip().split("\\"))
    except ValueError:
        return None
    return vals if len(vals) == n and all(np.isfinite(vals)) else None


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
    pixel_spacing: str = ""  # Pixel Spacing (0028,0030) as written: row\column spacing, mm
    acquisition_time: str = ""  # Acquisition (else Content, else Series) Time, HHMMSS.FFFFFF
    bits_allocated: int = 16
    file_size: int = 0
    transfer_syntax: str = ""
    subseries: dict[str, str] = field(default_factory=dict, compare=False)  # SUBSERIES_TAGS

    @property
    def frames(self) -> int:
        return self.size[2] if len(self.size) > 2 else 1

    @property
    def normal(self) -> np.ndarray | None:
        if self.orientation is None:
            return None
        return np.cross(self.orientation[:3], self.orientation[3:])

    @property
    def spacing_values(self) -> tuple[float, ...] | None:
        """Pixel Spacing as two floats, None if missing or unparsable."""
        return _floats(self.pixel_spacing, 2)

    @property
    def pixel_bytes(self) -> int:
        """Bytes of uncompressed pixel data the header announces (all frames)."""
        n = int(np.prod(self.size[:2], dtype=np.int64)) * self.frames * self.components
        return n * max(self.bits_allocated, 1) // 8


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
        return r.GetMetaData(key).strip().rstrip("\x00").strip() if r.HasMetaDataKey(key) else ""

    try:
        file_size = os.path.getsize(path)
    except OSError:
        file_size = 0
    return SliceInfo(
        path=str(path),
        series_uid=tag("0020|000e"),
        size=tuple(r.GetSize()),
        components=r.GetNumberOfComponents(),
        position=_floats(tag("0020|0032"), 3),
        orientation=_floats(tag("0020|0037"), 6),
        instance=_int(tag("0020|0013")),
        modality=tag("0008|0060"),
        description=tag("0008|103e"),
        series_number=tag("0020|0011"),
        sop_uid=tag("0008|0018"),
        pixel_spacing=tag("0028|0030"),
        acquisition_time=tag("0008|0032") or tag("0008|0033") or tag("0008|0031"),
        bits_allocated=_int(tag("0028|0100")) or 16,
        file_size=file_size,
        transfer_syntax=transfer_syntax(path),
        subseries={k: tag(k) for k in SUBSERIES_TAGS if tag(k)},
    )
