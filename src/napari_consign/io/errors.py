"""Exceptions and warnings of the io package.

Every error says what is wrong and what to do: ``str(err)`` is ``"<problem> <hint>"`` and both
parts are kept as attributes so a widget can show them separately.
"""

from __future__ import annotations


class ConsignIOError(Exception):
    """A file or folder could not be read or written; the message says why and what to do."""

    def __init__(self, problem: str, hint: str = "") -> None:
        self.problem = problem.strip()
        self.hint = hint.strip()
        super().__init__(f"{self.problem} {self.hint}".strip())


class UnreadableImageError(ConsignIOError):
    """The file is damaged, truncated, or not in a format SimpleITK can decode."""


class UnsupportedImageError(ConsignIOError):
    """The image was read but is not a single-channel 2D/3D scan (4D, RGB, non-image DICOM)."""


class DicomSeriesError(ConsignIOError):
    """No usable DICOM series, an unknown series UID, or a mixed stack."""


class WriteRefusedError(ConsignIOError):
    """Writing was refused: the target is the source scan, exists already, or has a wrong name."""


class GeometryWarning(UserWarning):
    """The scan loaded, but its physical geometry needs the user's attention (oblique, uneven)."""


def sitk_reason(exc: BaseException) -> str:
    """The informative part of a SimpleITK/ITK exception, without source paths and line numbers.

    Keeps what follows the last ``ITK ERROR:`` / ``sitk::ERROR:`` marker, drops the
    ``Class(0x...):`` prefix and stale errno lines ("Reason: No such file or directory").
    """
    text = str(exc).strip()
    for marker in ("ITK ERROR:", "sitk::ERROR:"):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Reason:")] or lines
    text = " ".join(lines) or type(exc).__name__
    head, sep, rest = text.partition("): ")
    if sep and "(0x" in head and " " not in head.strip():
        text = rest
    return text.strip().rstrip(".")
