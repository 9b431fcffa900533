"""A layer's geometry, copied to the layers the plugin adds so they overlay the scan exactly."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..io import geometry_from_metadata


def transform_kwargs(layer: Any) -> dict:
    """The source layer's full transform chain and a copy of its metadata, for a new layer."""
    return {
        "scale": tuple(np.asarray(layer.scale, dtype=float)),
        "translate": tuple(np.asarray(layer.translate, dtype=float)),
        "rotate": np.asarray(layer.rotate, dtype=float),
        "shear": np.asarray(layer.shear, dtype=float),
        "affine": np.asarray(layer.affine.affine_matrix, dtype=float),
        "metadata": copy.deepcopy(dict(layer.metadata)),
    }


def data_to_world_matrix(layer: Any) -> np.ndarray:
    """The layer's whole data-to-world map as one homogeneous matrix (public API only)."""
    n = layer.ndim
    origin = np.asarray(layer.data_to_world(np.zeros(n)), dtype=float)
    m = np.eye(n + 1)
    for i in range(n):
        e = np.zeros(n)
        e[i] = 1.0
        m[:n, i] = np.asarray(layer.data_to_world(e), dtype=float) - origin
    m[:n, n] = origin
    return m


def stacked_affine(layer: Any) -> np.ndarray:
    """Data-to-world of ``layer`` with one extra leading axis (a stack of samples) at identity."""
    inner = data_to_world_matrix(layer)
    n = layer.ndim
    m = np.eye(n + 2)
    m[1:, 1:] = inner
    return m


def spacing_of(layer: Any) -> tuple[float, ...]:
    """Voxel size in mm per data axis: from the reader's geometry, else from the transform."""
    try:
        geo = geometry_from_metadata(layer.metadata)
    except (KeyError, TypeError, ValueError):
        geo = None
    if geo is not None and len(geo.spacing_zyx) == layer.ndim:
        return tuple(float(s) for s in geo.spacing_zyx)
    m = data_to_world_matrix(layer)
    return tuple(float(v) for v in np.linalg.norm(m[:-1, :-1], axis=0))
