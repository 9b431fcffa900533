"""Layer data for napari from a scan file or DICOM folder: what the reader hook and the DICOM
series picker both give napari (``[(array, add_kwargs, "image")]``), with napari notifications
for geometry warnings and notes, and a progress bar for large DICOM folders.
"""

from __future__ import annotations

import warnings
from typing import Any

#: layer metadata key of the DICOM Modality (0008,0060) of a scan opened by the reader
MODALITY_KEY = "napari_consign_modality"
_PROGRESS_MIN_FILES = 200  # a DICOM folder this large gets a progress bar while headers load


def layer_data_tuples(path: str | list[str], series_uid: str | None = None) -> list[tuple]:
    """The reader's layer building: ``[(array, add_kwargs, "image")]`` for ``path``.

    ``series_uid`` picks one series of a DICOM folder (the series picker widget uses it).
    Geometry warnings go to ``show_warning``, notes (other series, skipped files) to
    ``show_info``; failures raise a ``ConsignIOError`` with a clear message.
    """
    from napari.utils.notifications import show_info, show_warning

    from .display import display_kwargs
    from .errors import ConsignIOError, GeometryWarning, UnreadableImageError, sitk_reason
    from .read_scan import read_volume

    with warnings.catch_warnings(record=True) as caught, HeaderProgress() as progress:
        warnings.simplefilter("always", GeometryWarning)
        try:
            volume = read_volume(path, series_uid=series_uid, progress=progress)
        except ConsignIOError:
            raise
        except Exception as exc:  # last line of defence: never a bare SimpleITK traceback
            raise UnreadableImageError(
                f"Could not read {path}: {sitk_reason(exc)}.",
                "Check that it is a complete NIfTI, MetaImage, NRRD or DICOM image.",
            ) from exc
    for w in caught:
        if issubclass(w.category, GeometryWarning):
            show_warning(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for note in volume.notes:
        show_info(note)
    data, kwargs, kind = volume.layer_data()
    if volume.modality:  # the analysis checks it against the model card
        kwargs["metadata"] = {**kwargs.get("metadata", {}), MODALITY_KEY: volume.modality}
    return [(data, {**kwargs, **display_kwargs(data, volume.modality)}, kind)]


class HeaderProgress:
    """``progress(done, total)`` for ``read_volume``: a napari progress bar once a DICOM folder
    has at least ``_PROGRESS_MIN_FILES`` files; closed on exit."""

    def __init__(self) -> None:
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if total < _PROGRESS_MIN_FILES:
            return
        if self.bar is None:
            from napari.utils import progress

            self.bar = progress(total=total, desc="Reading DICOM headers")
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> HeaderProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
