"""Every supported input: exact napari geometry on load, and labels saved back on the source grid.

Each case is a real file shipped with pydicom/nibabel or a scan written here with SimpleITK
(oblique, flipped, permuted directions; DICOM series; 2D; multi-frame), built in
``io_cases.py``. The reference is the original file read independently with SimpleITK
(``ReadImage``, or ``ImageSeriesReader`` with GDCM's own file order), never through the code
under test.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from io_cases import CASES, Case, build_case
from io_helpers import assert_layer_matches_sitk, assert_same_grid, corners

from napari_consign.io import GeometryWarning, read_volume, write_nifti

sitk = pytest.importorskip("SimpleITK")


def _load(case: Case):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = read_volume(case.path, frame=case.frame)
    msgs = [str(w.message) for w in caught if issubclass(w.category, GeometryWarning)]
    for expected in case.warns:
        assert any(expected in m for m in msgs), (expected, msgs)
    assert len(msgs) == len(case.warns), msgs
    return vol


def _ref3d(ref):
    return sitk.JoinSeries(ref) if ref.GetDimension() == 2 else ref


@pytest.mark.parametrize("name", CASES)
def test_load_places_layer_exactly(name, tmp_path, rng):
    from napari.layers import Image

    case = build_case(name, tmp_path, rng)
    vol = _load(case)
    ref3 = _ref3d(case.reference)
    loaded_ref = sitk.DICOMOrient(ref3, "LPS")
    np.testing.assert_array_equal(vol.array, sitk.GetArrayFromImage(loaded_ref))
    data, kwargs, kind = vol.layer_data()
    assert kind == "image" and data.ndim == 3
    layer = Image(data, **kwargs)
    assert_layer_matches_sitk(layer, loaded_ref)
    # the voxel napari shows at each corner is the original file's voxel at that world point
    ref_arr = sitk.GetArrayFromImage(ref3)
    for kji in corners(data.shape):
        world = np.asarray(layer.data_to_world(kji))
        ijk = ref3.TransformPhysicalPointToIndex(tuple(world[::-1]))
        assert ref_arr[ijk[::-1]] == data[kji]
    g = vol.geometry
    src = case.reference
    assert g.source.size == src.GetSize()
    np.testing.assert_allclose(g.source.spacing, src.GetSpacing())
    np.testing.assert_allclose(g.source.origin, src.GetOrigin())
    np.testing.assert_allclose(g.source.direction, src.GetDirection())
    assert g.grid.direction == pytest.approx(np.eye(3).ravel(), abs=0.8)  # LPS up to tilt
    assert g.orientation == sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
        ref3.GetDirection()
    )


@pytest.mark.parametrize("name", CASES)
def test_saved_labels_sit_on_the_source_grid(name, tmp_path, rng):
    case = build_case(name, tmp_path, rng)
    vol = _load(case)
    ref = case.reference
    ref_arr = sitk.GetArrayFromImage(ref)
    # a mask and the image itself (asymmetric, so any axis or flip error shows)
    mask = (vol.array > np.median(vol.array)).astype(np.uint8)
    out_mask = write_nifti(tmp_path / "mask.nii.gz", mask, vol.geometry)
    out_img = write_nifti(tmp_path / "image.nii", vol.array, vol.geometry)
    for out, expected in (
        (out_mask, (ref_arr > np.median(vol.array)).astype(np.uint8)),
        (out_img, ref_arr),
    ):
        saved = sitk.ReadImage(str(out))
        assert_same_grid(saved, ref)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(saved), expected)
    # reload through the reader: identical voxels and geometry
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeometryWarning)
        again = read_volume(out_mask)
    np.testing.assert_array_equal(again.array, mask)
    assert again.geometry.orientation == vol.geometry.orientation
    np.testing.assert_allclose(again.geometry.grid.origin, vol.geometry.grid.origin, atol=2e-4)
    np.testing.assert_allclose(again.geometry.grid.spacing, vol.geometry.grid.spacing, rtol=1e-6)
    np.testing.assert_allclose(
        again.geometry.grid.direction, vol.geometry.grid.direction, atol=1e-5
    )
