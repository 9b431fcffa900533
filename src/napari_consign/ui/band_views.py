"""Lazy label views of Bands: array-likes that napari slices, computed on access.

A band layer's data is a :class:`BandsView`: it compares the method's ``Bands`` at one alpha
**on access**, so in a 2D view napari computes only the slice on screen (a slider tick costs
about a millisecond of numerics, whatever the volume size); 3D rendering asks for the whole
volume. Values: 0 outside, 1 the outer band's ring, 2 the inner band (certain lesion).

The ring has two forms (``ring=``):

* ``"contour"``: when napari asks for one 2D plane (a 2D view, of any orientation), the view
  returns the inner band filled (2) and the outer band drawn as its boundary (1 exactly on the
  outer band's boundary pixels in that plane: outer pixels with a 4-neighbour outside the
  outer band or outside the image; drawn over the inner fill where the two bands meet). It is
  computed from the plane and its one-pixel margin only. Any other access (a 3D volume, the
  whole layer as an array, single voxels, thick slices) gets the filled labels, so 3D
  rendering, export and *Save Layers* see the filled volumes.
* ``"fill"``: the filled labels everywhere (1 = outer minus inner).

:class:`PreviewView` shows one finished slice while the rest is sampled;
:class:`DisagreementView` marks where two methods' outer bands differ. Nothing here imports Qt
or napari.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

RING, INNER = 1, 2
RING_CONTOUR, RING_FILL = "contour", "fill"
RING_MODES = (RING_CONTOUR, RING_FILL)


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
