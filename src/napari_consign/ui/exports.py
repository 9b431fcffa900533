"""What leaves the widget: a method's bands as NIfTI on the scan's grid, and a stack of
plausible segmentations drawn from a method's set as a labels layer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .. import analysis as an
from ..guarantee_text import method_label
from ..io import Geometry, geometry_from_metadata, write_nifti
from .layer_geometry import data_to_world_matrix, stacked_affine
from .layers import KIND_KEY, samples_layer_name

#: the plausible segmentations' colour (value 1)
PLAUSIBLE_COLOUR = (0.8, 0.475, 0.655, 1.0)


def _notify(kind: str, message: str) -> None:
    from napari.utils import notifications

    getattr(notifications, f"show_{kind}")(message)


def safe_file_stem(name: str) -> str:
    """``name`` as a file name stem: letters, digits, ``-``, ``.`` and ``_`` only."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    return stem or "scan"


def export_bands(
    image: Any,
    analysis: an.ImageAnalysis | None,
    method: str,
    path: str | Path,
    alpha: float,
    overwrite: bool = False,
) -> Path:
    """Write ``method``'s bands (0/1 ring/2 inner) at ``alpha`` to NIfTI on ``image``'s grid.

    Raises ``ConsignIOError``/``WriteRefusedError`` (never writes over the source scan).
    """
    if analysis is None or method not in analysis.bands:
        raise ValueError(f"no {method_label(method)} bands for this scan: run it first")
    labels = analysis.bands[method].labels(alpha)
    if image.ndim == 2:
        labels = labels[0]
    geometry = geometry_from_metadata(image.metadata)
    if geometry is None or tuple(geometry.shape) != labels.shape:
        geometry = Geometry.from_affine(labels.shape, data_to_world_matrix(image))
        _notify(
            "warning",
            f"'{image.name}' was not opened with the napari-consign reader: the bands are "
            "written on the layer's napari placement, not on a source file's grid.",
        )
    return write_nifti(path, labels, geometry, overwrite=overwrite)


def default_export_path(image: Any, method: str, alpha: float) -> Path:
    """Where *Export* proposes to write: beside the source scan (else the working folder),
    a name without spaces, e.g. ``demo_scan_crc_bands_a0.10.nii.gz``."""
    stem = safe_file_stem(image.name if image is not None else "scan")
    folder = Path.cwd()
    try:
        geometry = geometry_from_metadata(image.metadata) if image is not None else None
    except (KeyError, TypeError, ValueError):
        geometry = None
    source = Path(geometry.source_path) if geometry and geometry.source_path else None
    if source is not None and source.parent.is_dir():
        folder = source.parent
    return folder / f"{stem}_{method}_bands_a{alpha:.2f}.nii.gz"


def add_plausible_layer(
    viewer: Any, image: Any, analysis: an.ImageAnalysis | None, method: str, alpha: float, n: int
) -> Any:
    """Add ``n`` segmentations drawn from ``method``'s set at ``alpha``, as a Labels layer
    with a leading sample axis (replacing an earlier stack of the same method)."""
    if analysis is None or not analysis.can_sample(method):
        raise ValueError(f"{method_label(method)} offers no sampling of its set here")
    stack = analysis.plausible(method, alpha, n)
    if image.ndim == 2:
        stack = stack[:, 0]
    meta = dict(image.metadata)
    meta[KIND_KEY] = "plausible"
    meta["napari_consign"] = {
        "method": method,
        "alpha": analysis.bands[method].snap(alpha),
        "n": n,
        "axis 0": "sample index",
    }
    name = samples_layer_name(image.name, method)
    if name in viewer.layers:
        viewer.layers.remove(name)
    return viewer.add_labels(
        stack,
        name=name,
        affine=stacked_affine(image),
        metadata=meta,
        opacity=0.6,
        colormap={0: "transparent", 1: PLAUSIBLE_COLOUR, None: "transparent"},
    )
