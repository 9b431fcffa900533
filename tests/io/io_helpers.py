"""Helpers for the io tests: real files shipped with pydicom/nibabel, synthetic scans written
with SimpleITK (DICOM series with chosen geometry, NIfTI/MetaImage/NRRD with any direction), and
geometry checks against SimpleITK. Imported by the tests as ``io_helpers`` (pytest puts this
folder on sys.path)."""

from __future__ import annotations

import importlib.resources
import itertools
from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

UID_ROOT = "1.2.826.0.1.3680043.8.498."
_uid_counter = itertools.count(1000)


def new_uid() -> str:
    return f"{UID_ROOT}{np.random.default_rng().integers(1e9)}.{next(_uid_counter)}"


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix from angles (radians) about x, then y, then z."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def pydicom_data() -> Path:
    pytest.importorskip("pydicom")
    return Path(str(importlib.resources.files("pydicom") / "data" / "test_files"))


def pydicom_file(name: str) -> str:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not shipped with this pydicom")
    return str(path)


def nibabel_file(name: str) -> str:
    pytest.importorskip("nibabel")
    path = Path(str(importlib.resources.files("nibabel") / "tests" / "data" / name))
    if not path.exists():
        pytest.skip(f"{name} is not shipped with this nibabel")
    return str(path)


def write_dicom_series(
    folder: Path,
    array: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (0.8, 0.9, 2.5),
    origin: tuple[float, float, float] = (-100.5, -80.25, 30.125),
    row: tuple[float, float, float] = (1.0, 0.0, 0.0),
    col: tuple[float, float, float] = (0.0, 1.0, 0.0),
    uid: str | None = None,
    modality: str = "CT",
    description: str = "synthetic",
    series_number: int = 1,
    reverse_instances: bool = False,
    positions: list | None = None,
    prefix: str = "IM",
    extension: str = ".dcm",
    extra_tags: dict[str, str] | None = None,
) -> list[Path]:
    """One 2D DICOM file per slice of ``array`` (z, y, x, int16), with tags 0020|000e,
    0020|0032, 0020|0037, 0020|0013, 0008|0060; slice k at origin + k * spacing_z * normal
    (or at ``positions[k]``). ``extra_tags`` are written into every file (a value may contain
    ``{k}``, the slice index); ``extension`` may be '' (as scanners and CDs write)."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = uid or new_uid()
    row_v, col_v = np.asarray(row, float), np.asarray(col, float)
    normal = np.cross(row_v, col_v)
    n = array.shape[0]
    paths = []
    for k in range(n):
        img = sitk.GetImageFromArray(np.ascontiguousarray(array[k]).astype(np.int16))
        img.SetSpacing(spacing[:2])
        pos = (
            np.asarray(positions[k], float)
            if positions is not None
            else np.asarray(origin) + k * spacing[2] * normal
        )
        instance = n - k if reverse_instances else k + 1
        tags = {
            "0008|0060": modality,
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0020|000d": uid + ".0",
            "0020|000e": uid,
            "0008|0018": f"{uid}.{int.from_bytes(prefix.encode(), 'big') % 10**8}.{k + 1}",
            "0020|0011": str(series_number),
            "0008|103e": description,
            "0020|0013": str(instance),
            "0020|0032": "\\".join(f"{v:.6f}" for v in pos),
            "0020|0037": "\\".join(f"{v:.8f}" for v in (*row_v, *col_v)),
            "0018|0050": f"{spacing[2]:.4f}",
        }
        tags.update({key: value.format(k=k) for key, value in (extra_tags or {}).items()})
        for key, value in tags.items():
            img.SetMetaData(key, value)
        w = sitk.ImageFileWriter()
        w.SetImageIO("GDCMImageIO")
        w.KeepOriginalImageUIDOn()
        path = folder / f"{prefix}{instance:04d}{extension}"
        w.SetFileName(str(path))
        w.Execute(img)
        paths.append(path)
    return paths


def write_image(
    path: Path,
    array: np.ndarray,
    *,
    spacing=None,
    origin=None,
    direction=None,
    vector: bool = False,
) -> Path:
    """Write an array (z, y, x) with SimpleITK and the given geometry (SimpleITK order)."""
    img = sitk.GetImageFromArray(array, isVector=vector)
    d = img.GetDimension()
    img.SetSpacing(spacing if spacing is not None else (1.0,) * d)
    img.SetOrigin(origin if origin is not None else (0.0,) * d)
    if direction is not None:
        img.SetDirection(np.asarray(direction, float).ravel().tolist())
    sitk.WriteImage(img, str(path))
    return path


def corners(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    return list(itertools.product(*[(0, s - 1) if s > 1 else (0,) for s in shape]))


def assert_layer_matches_sitk(layer, loaded_sitk, atol: float = 1e-6) -> None:
    """``layer.data_to_world((k, j, i)) == img.TransformIndexToPhysicalPoint((i, j, k))[::-1]``."""
    for kji in corners(layer.data.shape):
        world = np.asarray(layer.data_to_world(kji), float)
        expected = np.asarray(loaded_sitk.TransformIndexToPhysicalPoint(kji[::-1])[::-1])
        np.testing.assert_allclose(world, expected, atol=atol, rtol=0)


def assert_same_grid(a, b, *, atol_mm: float = 2e-4, atol_dir: float = 1e-5) -> None:
    """Two SimpleITK images share size, spacing, origin and direction (NIfTI: float32)."""
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=atol_mm, rtol=0)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=atol_dir, rtol=0)


def volume_image(vol):
    """A SimpleITK image of a ``Volume``'s array on its (LPS) grid, to look up physical points."""
    img = sitk.GetImageFromArray(np.asarray(vol.array))
    grid = vol.geometry.grid
    img.SetSpacing(grid.spacing)
    img.SetOrigin(grid.origin)
    img.SetDirection(grid.direction)
    return img


def assert_files_land(vol, files, atol: float = 1e-4) -> int:
    """Each DICOM file's corner pixels, at the physical points SimpleITK gives them, hold the
    file's values in the loaded volume. Files whose plane falls between the volume's slices
    (a resampled stack) are skipped; returns how many files were checked."""
    img = volume_image(vol)
    arr = np.asarray(vol.array)
    checked = 0
    for f in files:
        ref = sitk.ReadImage(str(f))
        ref_arr = sitk.GetArrayFromImage(ref)
        x, y = ref.GetSize()[:2]
        on_grid = True
        for i, j in ((0, 0), (x - 1, 0), (0, y - 1), (x - 1, y - 1)):
            point = ref.TransformIndexToPhysicalPoint((i, j, 0))
            cont = np.asarray(img.TransformPhysicalPointToContinuousIndex(point))
            if np.abs(cont - np.round(cont)).max() > atol:
                on_grid = False
                break
            k = tuple(int(v) for v in np.round(cont)[::-1])
            assert arr[k] == pytest.approx(float(ref_arr[0, j, i]), abs=1e-3), (f, i, j)
        checked += on_grid
    return checked
