"""Band layers: lazy label views of Bands, colours, names, geometry copied from the scan.

A band layer is one napari ``Labels`` layer per method and image, named
``"{image} · {method} · bands"``: 0 outside, 1 the outer band's ring, 2 the inner band
(certain lesion). Its data is a :class:`BandsView`: an array-like that compares the method's
``Bands`` at one alpha **on access**, so in a 2D view napari computes only the slice on screen
(a slider tick costs about a millisecond of numerics, whatever the volume size); 3D rendering
asks for the whole volume. Every band layer copies the source image layer's ``scale``,
``translate``, ``rotate``, ``shear`` and ``affine`` and its metadata (so the geometry stored by
the reader travels along and ``data_to_world`` is identical).

The ring has two forms (``ring=``):

* ``"contour"`` (the widget's default): when napari asks for one 2D plane (a 2D view, of any
  orientation), the view returns the inner band filled (2) and the outer band drawn as its
  boundary (1 exactly on the outer band's boundary pixels in that plane: outer pixels with a
  4-neighbour outside the outer band or outside the image; drawn over the inner fill where the
  two bands meet). It is computed from the plane and its one-pixel margin only: a few
  comparisons per pixel. Any other access (a 3D volume for 3D rendering, ``np.asarray`` of the
  whole layer, single voxels, thick slices) gets the filled labels, so 3D rendering, export and
  *Save Layers* see the filled volumes.
* ``"fill"``: the filled labels everywhere (1 = outer minus inner).

Every method has its own colour pair (:data:`METHOD_COLOURS`, from the Okabe-Ito and Paul Tol
palettes, distinguishable with the common colour-vision deficiencies): CRC blue inner / orange
ring, COAT bluish-green / reddish-purple, AT sky-blue / vermillion, CONSIGN indigo / sand,
pixel-wise wine / teal. The ring is solid as a 2D contour and translucent as a fill. The
disagreement view uses Tol's cyan (A only), rose (B only) and pear (both): none of them is a
band colour.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import numpy as np

from ..guarantee_text import ENVELOPE_METHODS, method_label
from ..palette import (  # noqa: F401  (re-exported: the widget's tests and benchmarks use them)
    BLUE,
    DISAGREEMENT_COLOURS,
    METHOD_COLOUR_NAMES,
    METHOD_COLOURS,
    ORANGE,
    method_colours,
)

RING, INNER = 1, 2
A_ONLY, B_ONLY, BOTH = 1, 2, 3

BAND_OPACITY = 0.7
KIND_KEY = "napari_consign_kind"  # metadata marker of the layers this plugin adds


RING_ALPHA = 0.55  # a filled ring is see-through so the anatomy under it stays readable
RING_CONTOUR, RING_FILL = "contour", "fill"
RING_MODES = (RING_CONTOUR, RING_FILL)


def band_colormap(method: str = "crc", solid_ring: bool = False) -> dict:
    """``colormap`` for ``add_labels`` (becomes a ``DirectLabelColormap``): the method's inner
    colour opaque, its ring colour solid for a 2D contour, translucent for a filled ring."""
    inner, ring = method_colours(method)
    ring = ring if solid_ring else (*ring[:3], RING_ALPHA)
    return {0: "transparent", RING: ring, INNER: inner, None: "transparent"}


def disagreement_colormap() -> dict:
    colours = DISAGREEMENT_COLOURS
    return {
        0: "transparent",
        A_ONLY: colours["A only"],
        B_ONLY: colours["B only"],
        BOTH: colours["both"],
        None: "transparent",
    }


def _swatch(rgba: tuple, text: str) -> str:
    r, g, b = (round(255 * c) for c in rgba[:3])
    return f'<span style="color:#{r:02x}{g:02x}{b:02x}">&#9632;</span>&nbsp;{text}'


def legend_html(methods: list[str], disagreement: list[str] | None = None) -> str:
    """A rich-text legend: per method its inner-band and ring colours; with a disagreement
    pair ``[a, b]``, the colours of "a only", "b only" and "both"."""
    rows = []
    for m in methods:
        inner, ring = method_colours(m)
        label = method_label(m)
        rows.append(f"<b>{label}</b>: {_swatch(inner, 'inner')} &nbsp; {_swatch(ring, 'ring')}")
    if disagreement:
        a, b = (method_label(m) for m in disagreement)
        colours = DISAGREEMENT_COLOURS
        rows.append(
            f"<b>{a} vs {b}</b>: {_swatch(colours['A only'], f'{a} only')} &nbsp; "
            f"{_swatch(colours['B only'], f'{b} only')} &nbsp; {_swatch(colours['both'], 'both')}"
        )
    return "<br>".join(rows)


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


def outer_boundary(outer: np.ndarray) -> np.ndarray:
    """The boundary of a 2D mask: its pixels with a 4-neighbour outside it (beyond the array's
    edge counts as outside), i.e. ``outer & ~binary_erosion(outer, border_value=0)``."""
    outer = np.asarray(outer, dtype=bool)
    p = np.pad(outer, 1)
    interior = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return outer & ~interior


def contour_labels(filled: np.ndarray) -> np.ndarray:
    """2D filled band labels (0/1 ring/2 inner) to the contour form: 2 on the inner band, 1 on
    the outer band's boundary (over the inner fill where they meet), 0 elsewhere."""
    filled = np.asarray(filled)
    out = (filled == INNER).view(np.uint8) * np.uint8(INNER)
    out[outer_boundary(filled > 0)] = RING
    return out


def _plane(key: tuple, shape: tuple[int, ...]) -> tuple[tuple, tuple] | None:
    """For a key selecting one 2D plane (ints and exactly two unit-step slices), the key widened
    by one pixel on each side in the plane (within the array) and the crop back; else None."""
    if len(key) > len(shape) or any(k is Ellipsis or k is None for k in key):
        return None
    key = (*key, *(slice(None),) * (len(shape) - len(key)))
    wide, crop = [], []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, (int, np.integer)):
            wide.append(k)
        elif isinstance(k, slice) and k.step in (None, 1):
            start, stop, _ = k.indices(n)
            if stop <= start:
                return None
            lo, hi = max(start - 1, 0), min(stop + 1, n)
            wide.append(slice(lo, hi))
            crop.append(slice(start - lo, stop - lo))
        else:
            return None
    if len(crop) != 2:
        return None
    return tuple(wide), tuple(crop)


class _LabelsArray:
    """Base of the lazy array-likes: shape/dtype/ndim, ``__getitem__`` and ``__array__``."""

    dtype = np.dtype(np.uint8)

    def __init__(self, shape: tuple[int, ...], squeeze_lead: bool) -> None:
        # squeeze_lead: the source image is 2D; the bands are (1, H, W)
        self.squeeze_lead = squeeze_lead
        self.full_shape = tuple(shape)
        self.shape = tuple(shape[1:]) if squeeze_lead else tuple(shape)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def _get(self, key: tuple) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _full_key(self, key: Any) -> tuple:
        if self.squeeze_lead:
            return _prepend(key, 0)
        return key if isinstance(key, tuple) else (key,)

    def _index(self, key: tuple) -> np.ndarray:
        return self._get(key)

    def __getitem__(self, key: Any) -> np.ndarray:
        return self._index(self._full_key(key))

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self._get(self._full_key((slice(None),) * self.ndim))
        return out if dtype is None else out.astype(dtype)

    def materialize(self) -> np.ndarray:
        return np.asarray(self)


class _BandLabels(_LabelsArray):
    """Band labels with the ring as a contour on 2D planes (``ring="contour"``) or filled."""

    def __init__(self, shape: tuple[int, ...], squeeze_lead: bool, ring: str) -> None:
        if ring not in RING_MODES:
            raise ValueError(f"ring must be one of {RING_MODES}, got {ring!r}")
        super().__init__(shape, squeeze_lead)
        self.ring = ring

    def _index(self, key: tuple) -> np.ndarray:
        if self.ring == RING_CONTOUR:
            plane = _plane(key, self.full_shape)
            if plane is not None:
                wide, crop = plane
                return contour_labels(self._get(wide))[crop]
        return self._get(key)

    def filled(self, key: Any = None) -> np.ndarray:
        """The filled labels (1 = outer minus inner) at ``key`` (default: everything)."""
        if key is None:
            return np.asarray(self)
        return self._get(self._full_key(key))


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


class BandsView(_BandLabels):
    """Labels of ``bands`` at ``alpha`` (snapped to its grid), computed on access.

    Level-map bands (CRC, AT, COAT, pixel-wise) compare only the requested region; mask-stack
    bands (CONSIGN) unpack the level once and keep it in a small cache shared by views.
    ``ring``: ``"fill"`` (default here) or ``"contour"`` (2D planes, see the module doc).
    """

    def __init__(
        self,
        bands: Any,
        alpha: float,
        squeeze_lead: bool = False,
        cache: _LevelCache | None = None,
        ring: str = RING_FILL,
    ) -> None:
        super().__init__(bands.shape, squeeze_lead, ring)
        self.bands = bands
        self.alpha = bands.snap(alpha)
        self.level = bands.index(alpha)
        self._cache = cache if cache is not None else _LevelCache()
        self._levels = (
            (bands.outer_level, bands.inner_start) if hasattr(bands, "outer_level") else None
        )

    def retarget(self, alpha: float) -> None:
        """Show the same bands at ``alpha`` (snapped): the slider's tick, no new view."""
        self.alpha = self.bands.snap(alpha)
        self.level = self.bands.index(alpha)

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


class PreviewView(_BandLabels):
    """A volume of zeros with the bands of one slice ``z`` (shown while the rest is sampled)."""

    def __init__(
        self,
        shape: tuple[int, ...],
        z: int,
        bands: Any,
        alpha: float,
        squeeze_lead: bool,
        ring: str = RING_FILL,
    ) -> None:
        super().__init__(shape, squeeze_lead, ring)
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
        "values": {
            "0": "outside",
            "1": "outer band: its boundary in 2D contour mode, else outer minus inner",
            "2": "inner band (certain)",
        },
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


def add_band_layer(
    viewer: Any,
    image_layer: Any,
    method: str,
    data: Any,
    metadata: dict,
    solid_ring: bool = False,
) -> Any:
    """Add a band Labels layer on the image's geometry, just above the image."""
    kw = transform_kwargs(image_layer)
    kw["metadata"] = metadata
    layer = viewer.add_labels(
        data,
        name=band_layer_name(image_layer.name, method),
        colormap=band_colormap(method, solid_ring),
        opacity=BAND_OPACITY,
        blending="translucent",
        **kw,
    )
    return layer


def solid_ring(ring: str, ndisplay: int) -> bool:
    """Whether the ring colour is solid: a 2D contour line; a filled ring (and the filled
    volumes of 3D rendering) stay translucent."""
    return ring == RING_CONTOUR and ndisplay == 2


def style_band_layer(layer: Any, ring: str, ndisplay: int) -> None:
    """Ring colour for the ring form and display (napari's own ``contour`` stays 0: it would
    outline the inner band too)."""
    entry = layer.metadata.get("napari_consign") or {}
    wanted = band_colormap(entry.get("method", "crc"), solid_ring(ring, ndisplay))
    if not np.allclose(layer.colormap.map(RING), wanted[RING]):
        layer.colormap = wanted


def layer_key(layer: Any) -> Any:
    """A layer's stable identity (``unique_id``): the same for the layer and every proxy of
    it that napari hands a plugin, unlike ``id()``."""
    return layer.unique_id


def same_layer(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are the same layer (or proxies of it)."""
    return a is not None and b is not None and layer_key(a) == layer_key(b)


def is_plugin_layer(layer: Any) -> bool:
    return bool(getattr(layer, "metadata", {}).get(KIND_KEY))
