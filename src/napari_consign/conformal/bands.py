"""Bands: the one result type of every method, built once and read per slider tick.

Every Bands object answers ``masks(alpha)`` and ``labels(alpha)`` on an ascending grid of error
levels ``alphas`` (the slider snaps to it); the inner band always lies inside the outer band.
Two storage forms exist, and consumers never need to know which one they hold:

:class:`ThresholdBands`, for methods whose sets are nested in alpha (CRC, AT, COAT, pixel-wise),
stores per voxel:

* ``outer_level``: the number of leading grid levels at which the voxel is in the outer band.
  Outer bands shrink as alpha grows, so the voxel is in the outer band at grid index ``j`` iff
  ``outer_level > j``.
* ``inner_start``: the first grid index at which the voxel is in the (raw) inner band; raw
  inner bands grow with alpha. ``len(alphas)`` means never.

At grid index ``j``: ``outer = outer_level > j`` and ``inner = (inner_start <= j) & outer``. The
``& outer`` is the nesting rule (docs/methods.md §2.3): the inner band always lies inside the outer
band, at every alpha. A slider tick is therefore two comparisons, never a recomputation.

:class:`MaskStackBands`, for methods calibrated per alpha whose sets need not be nested in
alpha (CONSIGN), stores one bit-packed (inner, outer) pair per grid level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .crc_rule import min_feasible_alpha
from .errors import ConformalInputError

#: Error levels the slider offers by default: 0.01, 0.02, ..., 0.50.
DEFAULT_ALPHAS = np.round(np.arange(1, 51) / 100.0, 2)

#: Labels view values.
OUTSIDE, RING, INNER = 0, 1, 2

_MAX_LEVELS = 254  # uint8 maps with one value to spare for "never"
_CHUNK = 1 << 22  # voxels per vectorised pass, bounds temporary float64 copies


def feasible_alphas(n: int, alphas: Sequence[float] | None = None) -> np.ndarray:
    """The grid levels that ``n`` usable calibration units support (``alpha >= 1/(n+1)``)."""
    grid = DEFAULT_ALPHAS if alphas is None else np.asarray(alphas, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0:
        raise ConformalInputError("the alpha grid must be a non-empty 1D sequence")
    if np.any(np.diff(grid) <= 0) or grid[0] <= 0 or grid[-1] >= 1:
        raise ConformalInputError("the alpha grid must be strictly increasing inside (0, 1)")
    if grid.size > _MAX_LEVELS:
        raise ConformalInputError(f"the alpha grid may hold at most {_MAX_LEVELS} levels")
    keep = grid >= min_feasible_alpha(n) - 1e-12
    if not keep.any():
        raise ConformalInputError(
            f"no alpha of the grid is feasible with {n} calibration units; the smallest "
            f"feasible alpha is {min_feasible_alpha(n):.4g}"
        )
    return grid[keep]


@dataclass(frozen=True)
class Bands:
    """Inner and outer band of one scan and method, on a grid of alphas (abstract)."""

    alphas: np.ndarray
    method: str
    info: dict

    @property
    def shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def index(self, alpha: float) -> int:
        """Grid index of the level nearest to ``alpha`` (the slider snaps to the grid)."""
        return int(np.argmin(np.abs(self.alphas - float(alpha))))

    def snap(self, alpha: float) -> float:
        """The grid level the slider snaps ``alpha`` to."""
        return float(self.alphas[self.index(alpha)])

    def masks(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """``(inner, outer)`` boolean masks at the grid level nearest to ``alpha``."""
        raise NotImplementedError

    def labels(self, alpha: float) -> np.ndarray:
        """uint8 labels at ``alpha``: 0 outside, 1 outer ring (outer minus inner), 2 inner."""
        inner, outer = self.masks(alpha)
        out = outer.view(np.uint8).copy()
        out += inner.view(np.uint8)
        return out

    @classmethod
    def from_thresholds(
        cls,
        score: np.ndarray,
        alphas: np.ndarray,
        tau_outer: np.ndarray,
        tau_inner: np.ndarray,
        method: str = "",
        info: dict | None = None,
    ) -> ThresholdBands:
        """Bands of threshold sets ``{score >= tau}`` given one threshold pair per grid level.

        ``tau_outer[j]`` defines the outer band and ``tau_inner[j]`` the raw inner band at
        ``alphas[j]``. Thresholds that are not monotone in alpha (possible for per-image
        predictors) are replaced by their conservative monotone envelope: each outer
        threshold is lowered to the smallest threshold at any larger alpha, each inner
        threshold raised to the largest one at any larger alpha. Sets only grow (outer) or
        shrink (inner), so every guarantee is kept. Works on maps of any dimension in one
        vectorised pass.
        """
        alphas = np.asarray(alphas, dtype=np.float64)
        tau_outer = np.minimum.accumulate(np.asarray(tau_outer, np.float64)[::-1])[::-1]
        tau_inner = np.maximum.accumulate(np.asarray(tau_inner, np.float64)[::-1])[::-1]
        if not alphas.shape == tau_outer.shape == tau_inner.shape:
            raise ConformalInputError("one outer and one inner threshold per alpha are needed")
        _check_levels(alphas)
        score = np.asarray(score)
        inner_ascending = tau_inner[::-1]
        outer_level = np.empty(score.shape, dtype=np.uint8)
        inner_start = np.empty(score.shape, dtype=np.uint8)
        flat_s, flat_o, flat_i = score.reshape(-1), outer_level.reshape(-1), inner_start.reshape(-1)
        for lo in range(0, flat_s.size, _CHUNK):
            chunk = flat_s[lo : lo + _CHUNK].astype(np.float64)
            flat_o[lo : lo + _CHUNK] = np.searchsorted(tau_outer, chunk, side="right")
            flat_i[lo : lo + _CHUNK] = alphas.size - np.searchsorted(
                inner_ascending, chunk, side="right"
            )
        return ThresholdBands(alphas, method, dict(info or {}), outer_level, inner_start)

    @classmethod
    def from_mask_stack(
        cls,
        alphas: np.ndarray,
        inner: np.ndarray,
        outer: np.ndarray,
        method: str = "",
        info: dict | None = None,
    ) -> MaskStackBands:
        """Bands from one (inner, outer) mask pair per grid level, stacked on axis 0.

        The inner band is intersected with the outer band level by level.
        """
        alphas = np.asarray(alphas, dtype=np.float64)
        inner, outer = np.asarray(inner, bool), np.asarray(outer, bool)
        if inner.shape != outer.shape or inner.shape[:1] != alphas.shape:
            raise ConformalInputError("one inner and one outer mask per alpha are needed")
        _check_levels(alphas)
        n = len(alphas)
        packed_outer = np.packbits(outer.reshape(n, -1), axis=1)
        packed_inner = np.packbits((inner & outer).reshape(n, -1), axis=1)
        return MaskStackBands(
            alphas, method, dict(info or {}), outer.shape[1:], packed_inner, packed_outer
        )


def _check_levels(alphas: np.ndarray) -> None:
    if alphas.size > _MAX_LEVELS:
        raise ConformalInputError(f"at most {_MAX_LEVELS} alpha levels are supported")


@dataclass(frozen=True)
class ThresholdBands(Bands):
    """Bands as per-voxel critical-level maps (methods whose sets are nested in alpha)."""

    outer_level: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    inner_start: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))

    def __post_init__(self) -> None:
        if self.outer_level.shape != self.inner_start.shape:
            raise ConformalInputError("outer and inner level maps must have the same shape")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.outer_level.shape

    def masks(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        j = self.index(alpha)
        outer = self.outer_level > j
        inner = (self.inner_start <= j) & outer
        return inner, outer


@dataclass(frozen=True)
class MaskStackBands(Bands):
    """Bands as one bit-packed mask pair per grid level (sets not nested in alpha)."""

    mask_shape: tuple[int, ...] = ()
    packed_inner: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    packed_outer: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mask_shape)

    def masks(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        j = self.index(alpha)
        count = int(np.prod(self.mask_shape))

        def unpack(packed: np.ndarray) -> np.ndarray:
            return np.unpackbits(packed[j], count=count).view(bool).reshape(self.mask_shape)

        return unpack(self.packed_inner), unpack(self.packed_outer)
