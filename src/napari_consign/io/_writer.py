"""npe2 writer hook: ``write_labels(path, data, meta)`` saves a Labels layer as NIfTI.

The geometry comes from the layer's metadata (``GEOMETRY_KEY``, put there by the reader or by
``layer_kwargs``), so the mask lands on the source scan's voxel grid. Labels without it are
written with the layer's own data-to-world transform (scale, translate, rotate, shear, affine;
napari world taken as LPS mm), or identity, and a warning says so.

Overwrites: napari's Save dialog already asks before replacing a file, so this hook replaces
existing NIfTI files, but it never writes over the source scan recorded in the metadata
(``WriteRefusedError``) nor over a file that is not NIfTI (a bundle, a DICOM file). The file
is written atomically and re-read before it replaces anything (a full disk raises
``OutputError`` instead of returning the path of a 0-byte mask). The Python API
``write_nifti`` refuses existing files unless
``overwrite=True``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np


def _layer_geometry(shape: tuple[int, ...], meta: dict) -> tuple[Any, str]:
    """Geometry from a napari layer state (scale/translate/rotate/shear/affine), and a note."""
    from .geometry import Geometry

    n = len(shape)
    keys = ("scale", "translate", "rotate", "shear", "affine")
    if n not in (2, 3) or not any(k in meta for k in keys):
        return None, "identity (1 mm voxels at the origin)"
    from napari.utils.transforms import Affine

    data2physical = Affine(
        scale=meta.get("scale", [1.0] * n),
        translate=meta.get("translate", [0.0] * n),
        rotate=meta.get("rotate"),
        shear=meta.get("shear"),
        ndim=n,
    )
    affine = meta.get("affine")
    physical2world = (
        Affine(affine_matrix=np.asarray(affine)) if affine is not None else Affine(ndim=n)
    )
    matrix = physical2world.compose(data2physical).affine_matrix
    if np.allclose(matrix, np.eye(n + 1)):
        return None, "identity (1 mm voxels at the origin)"
    return Geometry.from_affine(shape, matrix), "the layer's scale/translate/rotate as LPS mm"


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: Labels ``data`` to NIfTI at ``path``; returns ``[path]``."""
    from napari.utils.notifications import show_warning

    from .errors import GeometryWarning
    from .geometry import geometry_from_metadata
    from .nifti_writer import write_nifti

    array = np.asarray(data)
    geometry = geometry_from_metadata(meta)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GeometryWarning)
        if geometry is None:
            geometry, how = _layer_geometry(array.shape, meta or {})
            if geometry is not None:
                warnings.warn(
                    f"Labels have no source-scan geometry: {path} is written with {how}. "
                    "Check it lines up with the scan in other tools.",
                    GeometryWarning,
                    stacklevel=2,
                )
        out = write_nifti(path, array, geometry, overwrite=True)
    for w in caught:
        if issubclass(w.category, GeometryWarning):
            show_warning(str(w.message))
    return [str(out)]
