"""Physical geometry of a scan and its mapping to napari layers.

Conventions (one for the whole plugin):

* SimpleITK order: vectors stored here (``size``, ``spacing``, ``origin``) are in SimpleITK index
  order (x, y, z); ``direction`` is the row-major d x d matrix whose *columns* are the index axes,
  in LPS patient coordinates (what ITK reports for every format, NIfTI included).
* Arrays are numpy (z, y, x), as ``sitk.GetArrayFromImage`` returns them.
* On load every 3D scan is reoriented to LPS with ``sitk.DICOMOrient(img, "LPS")`` (axis
  permutation and flips only, no resampling): array axes then run right-to-left (x, "L"),
  anterior-to-posterior (y, "P") and inferior-to-superior (z, "S"), up to a residual rotation for
  oblique scans. ``Geometry.grid`` describes that loaded array; ``Geometry.source`` is the file's
  own grid as read and ``Geometry.orientation`` its orientation code (e.g. ``"RAS"``), so writers
  can put masks back on the source voxel grid.
* napari world coordinates are physical LPS millimetres in (z, y, x) order:
  ``layer.data_to_world((k, j, i)) == img.TransformIndexToPhysicalPoint((i, j, k))[::-1]``.

Only numpy is imported here; SimpleITK is imported inside the functions that need it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

GEOMETRY_KEY = "consign_geometry"
"""Key of the geometry dict inside ``layer.metadata``."""

OBLIQUE_TOLERANCE_DEG = 1e-3
"""Axes tilted by more than this (degrees) from the nearest patient axis count as oblique."""

_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))


def _floats(values: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(values, dtype=float).ravel())


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid in physical space, in SimpleITK (x, y, z) order."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    def __post_init__(self) -> None:
        d = len(self.size)
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))
        object.__setattr__(self, "spacing", _floats(self.spacing))
        object.__setattr__(self, "origin", _floats(self.origin))
        object.__setattr__(self, "direction", _floats(self.direction))
        if len(self.spacing) != d or len(self.origin) != d or len(self.direction) != d * d:
            raise ValueError(
                f"inconsistent grid: size {self.size}, spacing {self.spacing}, "
                f"origin {self.origin}, direction of {len(self.direction)} values"
            )

    @property
    def ndim(self) -> int:
        return len(self.size)

    @property
    def shape(self) -> tuple[int, ...]:
        """Numpy array shape, (z, y, x)."""
        return self.size[::-1]

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(self.ndim, self.ndim)

    @classmethod
    def from_image(cls, img: Any) -> Grid:
        """The grid of a ``SimpleITK.Image``."""
        return cls(img.GetSize(), img.GetSpacing(), img.GetOrigin(), img.GetDirection())

    def apply_to(self, img: Any) -> Any:
        """Set spacing, origin and direction of a ``SimpleITK.Image`` (same size) in place."""
        if tuple(img.GetSize()) != self.size:
            raise ValueError(f"image size {img.GetSize()} does not match grid size {self.size}")
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img

    def index_to_physical(self, index: Any) -> np.ndarray:
        """Physical point (x, y, z) of a continuous index (i, j, k), as ITK computes it."""
        idx = np.asarray(index, dtype=float)
        return np.asarray(self.origin) + self.direction_matrix @ (np.asarray(self.spacing) * idx)

    def as_3d(self) -> Grid:
        """A 2D grid as a one-slice 3D grid (what ``sitk.JoinSeries`` makes); 3D unchanged."""
        if self.ndim == 3:
            return self
        if self.ndim != 2:
            raise ValueError(f"only 2D or 3D grids, not {self.ndim}D")
        d = np.eye(3)
        d[:2, :2] = self.direction_matrix
        return Grid((*self.size, 1), (*self.spacing, 1.0), (*self.origin, 0.0), d.ravel())

    def to_dict(self) -> dict[str, list]:
        return {
            "size": list(self.size),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grid:
        return cls(d["size"], d["spacing"], d["origin"], d["direction"])


def orientation_code(direction: Any) -> str:
    """ITK/DICOM orientation code of a 3x3 direction ("LPS" for identity, "RAS" for diag(-1,-1,1)).

    Letters name the patient direction each index axis points *towards*, as ``sitk.DICOMOrient``
    uses them.
    """
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    code = ""
    for j in range(3):
        i = int(np.argmax(np.abs(d[:, j])))
        code += _LETTERS[i][0 if d[i, j] > 0 else 1]
    return code


def oblique_degrees(direction: Any) -> float:
    """Largest angle (degrees) between an index axis and its nearest patient axis."""
    d = np.asarray(direction, dtype=float)
    n = math.isqrt(d.size)
    d = d.reshape(n, n)
    worst = 0.0
    for j in range(n):
        col = d[:, j] / np.linalg.norm(d[:, j])
        i = int(np.argmax(np.abs(col)))
        off = float(np.sqrt(np.sum(np.delete(col, i) ** 2)))
        worst = max(worst, math.degrees(math.atan2(off, abs(col[i]))))
    return worst


@dataclass(frozen=True)
class Geometry:
    """Where a (z, y, x) array sits in the patient, and how it was read.

    ``grid``: the array as loaded (reoriented to LPS); ``source``: the file's own grid as read
    (2D for 2D files); ``orientation``: the source's orientation code; ``source_path`` and
    ``series_uid`` identify the scan ("" when unknown).
    """

    grid: Grid
    source: Grid
    orientation: str = ""
    source_path: str = ""
    series_uid: str = ""

    # -- convenient views of the loaded grid ---------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """Shape (z, y, x) of the loaded array."""
        return self.grid.shape

    @property
    def spacing(self) -> tuple[float, ...]:
        return self.grid.spacing

    @property
    def origin(self) -> tuple[float, ...]:
        return self.grid.origin

    @property
    def direction(self) -> tuple[float, ...]:
        return self.grid.direction

    @property
    def spacing_zyx(self) -> tuple[float, ...]:
        """Voxel size in mm in array order (z, y, x): what a model needs."""
        return self.grid.spacing[::-1]

    @property
    def oblique_degrees(self) -> float:
        return oblique_degrees(self.grid.direction)

    @property
    def is_oblique(self) -> bool:
        return self.oblique_degrees > OBLIQUE_TOLERANCE_DEG

    # -- napari ------------------------------------------------------------------------------
    def affine_zyx(self) -> np.ndarray:
        """4x4 data-to-world matrix in napari order: world (z, y, x) = A @ (k, j, i, 1)."""
        g = self.grid
        a = np.eye(g.ndim + 1)
        a[:-1, :-1] = (g.direction_matrix @ np.diag(g.spacing))[::-1, ::-1]
        a[:-1, -1] = np.asarray(g.origin)[::-1]
        return a

    def napari_transform(self) -> dict[str, Any]:
        """``scale``, ``translate`` and ``rotate`` for a napari layer (never ``affine`` too)."""
        g = self.grid
        return {
            "scale": list(g.spacing[::-1]),
            "translate": list(g.origin[::-1]),
            "rotate": g.direction_matrix[::-1, ::-1].tolist(),
        }

    # -- back to the source grid --------------------------------------------------------------
    def to_source_array(self, array: np.ndarray) -> np.ndarray:
        """Undo the load-time reorientation: ``array`` (on ``grid``) as an array on ``source``.

        Pure axis permutation and flips (what ``sitk.DICOMOrient`` back to ``orientation`` does),
        exact for any direction. 2D sources give a 2D (y, x) array.
        """
        array = np.asarray(array)
        if array.shape != self.grid.shape:
            raise ValueError(f"array shape {array.shape} != grid shape {self.grid.shape}")
        src = self.source.as_3d()
        grid = self.grid.as_3d()
        m = np.linalg.solve(src.direction_matrix, grid.direction_matrix)
        perm = np.argmax(np.abs(m), axis=0)  # loaded axis j is source axis perm[j]
        signed = np.zeros((3, 3))
        signed[perm, range(3)] = np.sign(m[perm, range(3)])
        if sorted(perm.tolist()) != [0, 1, 2] or not np.allclose(m, signed, atol=1e-6):
            raise ValueError("loaded grid is not an axis permutation of the source grid")
        if any(grid.size[j] != src.size[perm[j]] for j in range(3)):
            raise ValueError(f"grid size {grid.size} is not a permutation of {src.size}")
        xyz = array.reshape(grid.shape).transpose(2, 1, 0)  # loaded, (x, y, z) index order
        out = np.transpose(xyz, np.argsort(perm))  # result axis a = loaded axis j, perm[j] == a
        flips = tuple(int(perm[j]) for j in range(3) if signed[perm[j], j] < 0)
        if flips:
            out = np.flip(out, axis=flips)
        out = out.transpose(2, 1, 0)
        if self.source.ndim == 2:
            out = out[0]
        return np.ascontiguousarray(out)

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain Python types only (lists, str, float), so napari can copy layer metadata."""
        return {
            "version": 1,
            "convention": "napari world = LPS mm in (z, y, x); grid = loaded array, LPS",
            "grid": self.grid.to_dict(),
            "source": self.source.to_dict(),
            "orientation": self.orientation,
            "source_path": self.source_path,
            "series_uid": self.series_uid,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        return cls(
            grid=Grid.from_dict(d["grid"]),
            source=Grid.from_dict(d["source"]),
            orientation=str(d.get("orientation", "")),
            source_path=str(d.get("source_path", "")),
            series_uid=str(d.get("series_uid", "")),
        )

    @classmethod
    def from_affine(
        cls, shape: tuple[int, ...], affine_zyx: Any, source_path: str = ""
    ) -> Geometry:
        """Geometry of an array of ``shape`` (z, y, x) placed by a napari data-to-world matrix.

        The grid is its own source (nothing to undo). Used for labels without source metadata.
        """
        a = np.asarray(affine_zyx, dtype=float)
        n = len(shape)
        if a.shape != (n + 1, n + 1):
            raise ValueError(f"affine of shape {a.shape} for a {n}D array")
        lin = a[:n, :n][::-1, ::-1]  # (x, y, z) order, columns = index axes
        spacing = np.linalg.norm(lin, axis=0)
        if np.any(spacing <= 0):
            raise ValueError("affine has a zero-length axis")
        grid = Grid(tuple(shape)[::-1], spacing, a[:n, n][::-1], (lin / spacing).ravel())
        code = orientation_code(grid.direction_matrix) if n == 3 else ""
        return cls(grid=grid, source=grid, orientation=code, source_path=source_path)


def attach_geometry(metadata: dict | None, geometry: Geometry) -> dict:
    """A copy of ``metadata`` with the geometry stored under ``GEOMETRY_KEY``."""
    out = dict(metadata or {})
    out[GEOMETRY_KEY] = geometry.to_dict()
    return out


def geometry_from_metadata(metadata: dict | None) -> Geometry | None:
    """The geometry stored by ``attach_geometry``, or None if there is none.

    Accepts a layer's ``metadata`` dict or a napari layer-state dict holding ``"metadata"``.
    """
    if not metadata:
        return None
    d = metadata.get(GEOMETRY_KEY)
    if d is None and isinstance(metadata.get("metadata"), dict):
        d = metadata["metadata"].get(GEOMETRY_KEY)
    if d is None:
        return None
    return Geometry.from_dict(d)


def layer_kwargs(
    geometry: Geometry, *, name: str | None = None, metadata: dict | None = None
) -> dict[str, Any]:
    """kwargs for ``viewer.add_image`` / ``add_labels`` placing an array of ``geometry.shape``.

    Gives ``scale``, ``translate``, ``rotate`` (no ``affine``: napari would compose both), and
    ``metadata`` with the geometry attached. Use the same kwargs for derived layers (bands).
    """
    kw: dict[str, Any] = geometry.napari_transform()
    kw["metadata"] = attach_geometry(metadata, geometry)
    if name is not None:
        kw["name"] = name
    return kw
