"""Band layers: colours, names, metadata and identity of the layers the plugin adds.

A band layer is one napari ``Labels`` layer per method and image, named
``"{image} · {method} · bands"``, whose data is a lazy :class:`~.band_views.BandsView`
(0 outside, 1 the outer band's ring, 2 the inner band). Every band layer copies the source
image layer's transform chain and metadata (:mod:`.layer_geometry`), so the geometry stored by
the reader travels along and ``data_to_world`` is identical.

Every method has its own colour pair (:data:`METHOD_COLOURS`, from the Okabe-Ito and Paul Tol
palettes, distinguishable with the common colour-vision deficiencies): CRC blue inner / orange
ring, COAT bluish-green / reddish-purple, AT sky-blue / vermillion, CONSIGN indigo / sand,
pixel-wise wine / teal. The ring is solid as a 2D contour and translucent as a fill. The
disagreement view uses Tol's cyan (A only), rose (B only) and pear (both): none of them is a
band colour.
"""

from __future__ import annotations

import copy
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
from .band_views import INNER, RING, RING_CONTOUR
from .layer_geometry import transform_kwargs

A_ONLY, B_ONLY, BOTH = 1, 2, 3

BAND_OPACITY = 0.7
KIND_KEY = "napari_consign_kind"  # metadata marker of the layers this plugin adds


RING_ALPHA = 0.55  # a filled ring is see-through so the anatomy under it stays readable


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
