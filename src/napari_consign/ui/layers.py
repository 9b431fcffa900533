"""Band layers: lazy label views of Bands, colours, names, geometry copied from the scan.

A band layer is one napari ``Labels`` layer per method and image, named
``"{image} · {method} · bands"``: 0 outside, 1 the outer ring (possible lesion), 2 the inner
band (certain lesion). Its data is a :class:`BandsView`: an array-like that compares the
method's ``Bands`` at one alpha **on access**, so in a 2D view napari computes only the slice
on screen (a slider tick costs well under a millisecond of numerics, whatever the volume
size); 3D rendering asks for the whole volume. Every band layer copies the source image
layer's ``scale``, ``translate``, ``rotate``, ``shear`` and ``affine`` and its metadata (so the
geometry stored by the reader travels along and ``data_to_world`` is identical).

Colours come from the Okabe-Ito palette (distinguishable with the common colour-vision
deficiencies): blue for the inner band, orange for the ring; the disagreement view uses
vermillion (A only), sky blue (B only) and yellow (both).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import numpy as np

from .guarantee_text import ENVELOPE_METHODS, method_label

# Okabe-Ito colours, RGBA in 0..1
BLUE = (0.0, 0.447, 0.698, 1.0)  # inner band
ORANGE = (0.902, 0.624, 0.0, 1.0)  # outer ring
VERMILLION = (0.835, 0.369, 0.0, 1.0)
SKY_BLUE = (0.337, 0.706, 0.914, 1.0)
YELLOW = (0.941, 0.894, 0.259, 1.0)

RING, INNER = 1, 2
A_ONLY, B_ONLY, BOTH = 1, 2, 3

BAND_OPACITY = 0.7
KIND_KEY = "napari_consign_kind"  # metadata marker of the layers this plugin adds


RING_ALPHA = 0.55  # the ring is see-through so the anatomy under it stays readable


def band_colormap() -> dict:
    """``colormap`` for ``add_labels`` (becomes a ``DirectLabelColormap``): the inner band
    opaque blue, the ring translucent orange."""
    ring = (*ORANGE[:3], RING_ALPHA)
    return {0: "transparent", RING: ring, INNER: BLUE, None: "transparent"}


def disagreement_colormap() -> dict:
    return {
        0: "transparent",
        A_ONLY: VERMILLION,
        B_ONLY: SKY_BLUE,
        BOTH: YELLOW,
        None: "transparent",
    }


def band_layer_name(image_name: str, method: str) -> str:
    return f"{image_name} · {method_label(method)} · bands"


def disagreement_layer_name(image_name: str, a: str, b: str) -> str:
    return f"{image_name} · {method_label(a)} vs {method_label(b)} · disagreement"


def samples_layer_name(image_name: str, method: str) -> str:
    return f"{image_name} · {method_label(method)} · plausible segmentations"


# --------------------------------------------------------------------------- geometry


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
    from ..io import geometry_from_metadata

    try:
        geo = geometry_from_metadata(layer.metadata)
    except (KeyError, TypeError, ValueError):
        geo = None
    if geo is not None and len(geo.spacing_zyx) == layer.ndim:
        return tuple(float(s) for s in geo.spacing_zyx)
    m = data_to_world_matrix(layer)
    return tuple(float(v) for v in np.linalg.norm(m[:-1, :-1], axis=0))


# --------------------------------------------------------------------------- lazy views


def _prepend(key: Any, lead: int) -> tuple:
    if not isinstance(key, tuple):
        key = (key,)
    return (lead, *key)


class _LabelsArray:
    """Base of the lazy array-likes: shape/dtype/ndim, ``__getitem__`` and ``__array__``."""

    dtype = np.dtype(np.uint8)

    def __init__(self, shape: tuple[int, ...], squeeze_lead: bool) -> None:
        # squeeze_lead: the source image is 2D; the bands are (1, H, W)
        self.squeeze_lead = squeeze_lead
        self.shape = tuple(shape[1:]) if squeeze_lead else tuple(shape)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def _get(self, key: tuple) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, key: Any) -> np.ndarray:
        if self.squeeze_lead:
            key = _prepend(key, 0)
        elif not isinstance(key, tuple):
            key = (key,)
        return self._get(key)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self[(slice(None),) * self.ndim]
        return out if dtype is None else out.astype(dtype)

    def materialize(self) -> np.ndarray:
        return np.asarray(self)


class _LevelCache:
    """Materialised labels of a few grid levels (mask-stack bands are unpacked per level)."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._items: OrderedDict = OrderedDict()

    def get(self, key: Any, make: Any) -> np.ndarray:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value


class BandsView(_LabelsArray):
    """Labels of ``bands`` at ``alpha`` (snapped to its grid), computed on access.

    Level-map bands (CRC, AT, COAT, pixel-wise) compare only the requested region; mask-stack
    bands (CONSIGN) unpack the level once and keep it in a small cache shared by views.
    """

    def __init__(
        self,
        bands: Any,
        alpha: float,
        squeeze_lead: bool = False,
        cache: _LevelCache | None = None,
    ) -> None:
        super().__init__(bands.shape, squeeze_lead)
        self.bands = bands
        self.alpha = bands.snap(alpha)
        self.level = bands.index(alpha)
        self._cache = cache if cache is not None else _LevelCache()
        self._levels = (
            (bands.outer_level, bands.inner_start) if hasattr(bands, "outer_level") else None
        )

    def _get(self, key: tuple) -> np.ndarray:
        if self._levels is not None:
            outer_level, inner_start = self._levels
            j = self.level
            outer = outer_level[key] > j
            out = outer.view(np.uint8).copy() if outer.ndim else np.uint8(outer)
            out += (inner_start[key] <= j) & outer
            return out
        full = self._cache.get((id(self.bands), self.level), lambda: self.bands.labels(self.alpha))
        return full[key]


class PreviewView(_LabelsArray):
    """A volume of zeros with the bands of one slice ``z`` (shown while the rest is sampled)."""

    def __init__(
        self, shape: tuple[int, ...], z: int, bands: Any, alpha: float, squeeze_lead: bool
    ) -> None:
        super().__init__(shape, squeeze_lead)
        self.full_shape = tuple(shape)
        self.z = int(z)
        self.bands = bands
        self.alpha = bands.snap(alpha)
        self._full: np.ndarray | None = None

    def _get(self, key: tuple) -> np.ndarray:
        if self._full is None:
            self._full = np.zeros(self.full_shape, np.uint8)
            self._full[self.z] = self.bands.labels(self.alpha)[0]
        return self._full[key]


class DisagreementView(_LabelsArray):
    """Where two methods' outer bands disagree: 1 A only, 2 B only, 3 both (0 neither)."""

    def __init__(
        self, a: Any, alpha_a: float, b: Any, alpha_b: float, squeeze_lead: bool = False
    ) -> None:
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f"bands of shapes {a.shape} and {b.shape} cannot be compared")
        super().__init__(a.shape, squeeze_lead)
        self.a = BandsView(a, alpha_a)
        self.b = BandsView(b, alpha_b)

    def _get(self, key: tuple) -> np.ndarray:
        out = (self.a._get(key) > 0).view(np.uint8).copy()
        out += (self.b._get(key) > 0).view(np.uint8) * np.uint8(2)
        return out


# --------------------------------------------------------------------------- layers


def band_metadata(image_layer: Any, method: str, bands: Any, alpha: float, kind: str) -> dict:
    """Metadata of a band layer: the scan's (geometry included) plus what the bands are."""
    meta = copy.deepcopy(dict(image_layer.metadata))
    info = dict(getattr(bands, "info", {}) or {})
    snapped = bands.snap(alpha)
    entry: dict[str, Any] = {
        "method": method,
        "alpha": snapped,
        "alphas": [float(a) for a in bands.alphas],
        "n_used": info.get("n_used"),
        "n_empty": info.get("n_empty"),
        "source_layer": image_layer.name,
        "values": {"0": "outside", "1": "outer ring (possible)", "2": "inner band (certain)"},
    }
    if hasattr(bands, "outer_level"):
        entry["thresholds"] = "per-voxel critical levels (thresholds applied in Bands)"
    for key in ("lambda_hat", "beta", "k", "kind", "failed_alphas"):
        if key in info:
            entry[key] = info[key]
    if method in ENVELOPE_METHODS:
        entry["envelope"] = True
    meta["napari_consign"] = entry
    meta[KIND_KEY] = kind
    return meta


def update_band_metadata(layer: Any, bands: Any, alpha: float) -> None:
    entry = layer.metadata.get("napari_consign")
    if isinstance(entry, dict):
        entry["alpha"] = bands.snap(alpha)


def add_band_layer(viewer: Any, image_layer: Any, method: str, data: Any, metadata: dict) -> Any:
    """Add a band Labels layer on the image's geometry, just above the image."""
    kw = transform_kwargs(image_layer)
    kw["metadata"] = metadata
    layer = viewer.add_labels(
        data,
        name=band_layer_name(image_layer.name, method),
        colormap=band_colormap(),
        opacity=BAND_OPACITY,
        blending="translucent",
        **kw,
    )
    return layer


def set_outline(layer: Any, outline: bool, ndisplay: int) -> None:
    """Outlines (contour) in 2D when asked; always filled in 3D (napari draws no 3D contour)."""
    want = 1 if (outline and ndisplay == 2) else 0
    if layer.contour != want:
        layer.contour = want


def is_plugin_layer(layer: Any) -> bool:
    return bool(getattr(layer, "metadata", {}).get(KIND_KEY))
