"""3D band rendering whose slider tick changes a colormap, never a volume texture.

In 3D napari needs the whole volume; re-comparing the levels and re-uploading the labels on
every tick cost seconds in software GL. Instead each method's bands go to the GPU **once** as a
small integer *code* volume, and a tick only swaps the layer's colormap (a lookup table of at
most :data:`MAX_CODES` colours, a few hundred bytes):

* every slider step ``s`` (alpha 0.01..0.50) gives each voxel a label ``0`` (outside), ``1``
  (ring: outer minus inner) or ``2`` (inner), exactly as ``Bands.labels`` at that alpha, grid
  snapping included;
* voxels with the same label sequence over all steps share one code; code 0 is "never in a
  band". Threshold methods (CRC, AT, COAT, pixel-wise) derive both bands from one score per
  voxel, so an image has at most about twice as many codes as grid levels; CONSIGN's packed
  masks give one code per distinct pattern over its (few) grid levels;
* the code volume is cropped to the box of voxels that are ever in a band and placed with the
  scan's exact data-to-world matrix (one ``affine``), so it covers no more screen and ray
  length than the bands need;
* at step ``s`` the colormap gives code ``k`` the colour of ``table[k, s]``; a data value ``k``
  falls in the middle of colour bin ``k`` (contrast limits ``(-0.5, n - 0.5)``, piecewise
  constant colormap, nearest-neighbour sampling), so the rendered set is exactly
  ``table[codes, s]``.

When a method yields more codes than the colormap's lookup texture can separate, ``band_codes``
returns None and the caller keeps the labels layer (correct, but re-uploaded per tick).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .band_views import INNER, RING
from .layers import method_colours

MAX_CODES = 256  # vispy samples colormaps through a 1024-texel lookup texture: 4 texels a code
MAX_PATTERN_LEVELS = 10  # mask-stack bands: 3 ** 10 patterns still fit one uint16 key
RING_ALPHA_3D = 0.35  # the ring is a see-through shell around the inner band
INNER_ALPHA_3D = 0.9


@dataclass(frozen=True)
class BandCodes:
    """A method's bands as codes: ``codes`` (cropped, uint8/uint16), its ``offset`` in the full
    volume, and ``table[code, step]`` the label (0/1/2) of each code at each slider step."""

    codes: np.ndarray
    offset: tuple[int, ...]
    table: np.ndarray
    full_shape: tuple[int, ...]

    def labels(self, step: int) -> np.ndarray:
        """The full-volume labels this code volume renders at slider step ``step``."""
        out = np.zeros(self.full_shape, np.uint8)
        box = tuple(slice(o, o + n) for o, n in zip(self.offset, self.codes.shape, strict=True))
        out[box] = self.table[self.codes, step]
        return out


def _step_levels(bands: Any, alphas: np.ndarray) -> np.ndarray:
    return np.array([bands.index(float(a)) for a in alphas], dtype=np.int64)


def _level_map_keys(bands: Any, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per voxel a key (outer level, inner start) and per key its labels at each step."""
    outer = np.asarray(bands.outer_level)
    inner = np.asarray(bands.inner_start)
    if outer.dtype.itemsize > 1 or inner.dtype.itemsize > 1:
        return None
    keys = outer.astype(np.uint16) << 8 | inner.astype(np.uint16)
    levels = _step_levels(bands, alphas)
    o = (np.arange(1 << 16) >> 8)[:, None]
    i = (np.arange(1 << 16) & 0xFF)[:, None]
    in_outer = o > levels[None, :]
    labels = in_outer.astype(np.uint8) + ((i <= levels[None, :]) & in_outer)
    return keys, labels


def _pattern_keys(bands: Any, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Mask-stack bands: per voxel its label pattern over the grid levels, base 3."""
    grid = [float(a) for a in bands.alphas]
    if len(grid) > MAX_PATTERN_LEVELS:
        return None
    keys = np.zeros(tuple(bands.shape), np.uint16)
    for level, alpha in enumerate(grid):
        keys += np.asarray(bands.labels(alpha), np.uint16) * np.uint16(3**level)
    levels = _step_levels(bands, alphas)
    n_keys = 3 ** len(grid)
    digits = (np.arange(n_keys)[:, None] // (3 ** levels[None, :])) % 3
    return keys, digits.astype(np.uint8)


def band_codes(bands: Any, alphas: np.ndarray) -> BandCodes | None:
    """The code volume of ``bands`` for slider steps at ``alphas`` (None: too many codes)."""
    alphas = np.asarray(alphas, dtype=float)
    made = (
        _level_map_keys(bands, alphas)
        if hasattr(bands, "outer_level")
        else _pattern_keys(bands, alphas)
    )
    if made is None:
        return None
    keys, key_labels = made
    present = np.bincount(keys.ravel(), minlength=len(key_labels)) > 0
    present_keys = np.flatnonzero(present)
    rows, inverse = np.unique(key_labels[present_keys], axis=0, return_inverse=True)
    never = np.flatnonzero(~rows.any(axis=1))
    # code 0 must be "never in a band": put that row first
    order = np.concatenate([never, np.setdiff1d(np.arange(len(rows)), never)])
    if len(never) == 0:
        rows = np.vstack([np.zeros((1, rows.shape[1]), rows.dtype), rows])
        order = np.concatenate([[0], np.arange(1, len(rows))])
        inverse = inverse + 1
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    table = rows[order]
    if len(table) > MAX_CODES:
        return None
    key_to_code = np.zeros(len(key_labels), np.uint16)
    key_to_code[present_keys] = rank[inverse.ravel()]
    dtype = np.uint8 if len(table) <= 256 else np.uint16
    codes = key_to_code[keys].astype(dtype)
    nonzero = np.argwhere(codes)
    if len(nonzero) == 0:
        lo = np.zeros(codes.ndim, int)
        hi = np.ones(codes.ndim, int)
    else:
        lo, hi = nonzero.min(axis=0), nonzero.max(axis=0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return BandCodes(
        codes=np.ascontiguousarray(codes[box]),
        offset=tuple(int(a) for a in lo),
        table=table.astype(np.uint8),
        full_shape=tuple(codes.shape),
    )


def step_colormap(method: str, table_column: np.ndarray, name: str) -> Any:
    """A napari colormap giving code ``k`` the colour of label ``table_column[k]``."""
    from napari.utils.colormaps import Colormap

    inner, ring = method_colours(method)
    palette = np.zeros((3, 4), np.float32)
    palette[RING] = (*ring[:3], RING_ALPHA_3D)
    palette[INNER] = (*inner[:3], INNER_ALPHA_3D)
    colors = palette[np.asarray(table_column, dtype=np.intp)]
    n = len(colors)
    controls = np.linspace(0.0, 1.0, n + 1)
    return Colormap(colors=colors, controls=controls, interpolation="zero", name=name)


def crop_affine(world_from_data: np.ndarray, offset: tuple[int, ...]) -> np.ndarray:
    """``world_from_data`` (homogeneous) for an array cropped at ``offset``."""
    shift = np.eye(len(offset) + 1)
    shift[:-1, -1] = offset
    return world_from_data @ shift


def volume_layer_kwargs(codes: BandCodes, world_from_data: np.ndarray) -> dict:
    """``add_image`` keyword arguments of a code volume (everything but colormap and name)."""
    n = int(codes.table.shape[0])
    return {
        "affine": crop_affine(world_from_data, codes.offset),
        "contrast_limits": (-0.5, n - 0.5),
        "rendering": "translucent",
        "interpolation3d": "nearest",
        "interpolation2d": "nearest",
        "blending": "translucent",
        "opacity": 1.0,
    }


class VolumeBands:
    """The 3D code-volume layers of a viewer, one per (image, method).

    In 3D each band labels layer is hidden and its code volume shown (made on first use, one
    upload); in 2D the other way round. :meth:`set_alpha` only swaps colormaps. The caller
    passes the band layers and their ``Bands`` in :meth:`sync`; nothing here holds numerics
    beyond :func:`band_codes`.
    """

    def __init__(self, viewer: Any, slider_alphas: np.ndarray) -> None:
        self.viewer = viewer
        self.alphas = np.asarray(slider_alphas, dtype=float)
        self._entries: dict[Any, dict] = {}  # key -> {"layer", "codes", "bands", "method"}
        self._prepared: dict[int, tuple[Any, BandCodes | None]] = {}  # id(bands) -> codes
        self._step = 0

    def prepare(self, bands_list: list[Any]) -> Any:
        """A generator computing the code volumes of ``bands_list`` (run it in a worker after
        an analysis, so the first 3D frame only uploads); yields once per method."""
        todo = [b for b in bands_list if id(b) not in self._prepared]
        for bands in todo:
            codes = band_codes(bands, self.alphas)
            self._prepared[id(bands)] = (bands, codes)
            yield bands

    def _codes_for(self, bands: Any) -> BandCodes | None:
        held = self._prepared.get(id(bands))
        if held is not None and held[0] is bands:
            return held[1]
        codes = band_codes(bands, self.alphas)
        self._prepared[id(bands)] = (bands, codes)
        return codes

    def drop_prepared(self, keep: list[Any]) -> None:
        """Forget prepared codes of bands not in ``keep`` (bands that were replaced)."""
        alive = {id(b) for b in keep}
        for key in [k for k in self._prepared if k not in alive]:
            self._prepared.pop(key, None)

    def step_of(self, alpha: float) -> int:
        return int(np.argmin(np.abs(self.alphas - float(alpha))))

    def layer(self, key: Any) -> Any:
        entry = self._entries.get(key)
        return None if entry is None else entry["layer"]

    def codes(self, key: Any) -> BandCodes | None:
        entry = self._entries.get(key)
        return None if entry is None else entry["codes"]

    def sync(self, band_layers: dict, alpha: float, three_d: bool, add_layer: Any) -> None:
        """Show code volumes (3D) or labels layers (2D) for ``band_layers``:
        ``{key: (labels_layer, bands, method, image_layer)}``; ``bands`` None while only a
        preview exists (the labels layer stays). ``add_layer(codes, method, image, key)``
        adds a code-volume layer and returns it."""
        self._step = self.step_of(alpha)
        for key in [k for k in self._entries if k not in band_layers]:
            self.remove(key)
        for key, (labels, bands, method, image) in band_layers.items():
            entry = self._entries.get(key)
            if entry is not None and entry["bands"] is not bands:  # re-run: other bands
                if entry["layer"].visible:
                    labels.visible = True  # the labels layer shows them until remade
                self.remove(key)
                entry = None
            if three_d and bands is not None and entry is None:
                codes = self._codes_for(bands)
                if codes is not None:
                    layer = add_layer(codes, method, image, key)
                    layer.visible = bool(labels.visible)
                    entry = {"layer": layer, "codes": codes, "bands": bands, "method": method}
                    self._entries[key] = entry
            if entry is None:
                continue
            volume = entry["layer"]
            if three_d:
                self._recolour(entry)
                if labels.visible:  # from 2D (or shown by the user): the volume takes its place
                    volume.visible = True
                    labels.visible = False
            else:
                if volume.visible:
                    labels.visible = True
                volume.visible = False

    def set_alpha(self, alpha: float) -> None:
        """Recolour every code volume for ``alpha``: a colormap, no volume upload."""
        step = self.step_of(alpha)
        if step == self._step:
            return
        self._step = step
        for entry in self._entries.values():
            self._recolour(entry)

    def _recolour(self, entry: dict) -> None:
        layer, step = entry["layer"], self._step
        name = f"napari-consign {entry['method']} step {step} #{id(entry['codes'])}"
        if layer.colormap.name != name:
            layer.colormap = step_colormap(entry["method"], entry["codes"].table[:, step], name)

    def remove(self, key: Any) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None and entry["layer"] in self.viewer.layers:
            self.viewer.layers.remove(entry["layer"])

    def forget(self, layer: Any) -> None:
        """A code-volume layer was removed by the user: forget it (remade on the next sync)."""
        for key, entry in list(self._entries.items()):
            if entry["layer"].unique_id == layer.unique_id:
                self._entries.pop(key, None)
