"""Every supported input: exact napari geometry on load, and labels saved back on the source grid.

Each case is a real file shipped with pydicom/nibabel or a scan written here with SimpleITK
(oblique, flipped, permuted directions; DICOM series; 2D; multi-frame). The reference is the
original file read independently with SimpleITK (``ReadImage``, or ``ImageSeriesReader`` with
GDCM's own file order), never through the code under test.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from io_helpers import (
    assert_layer_matches_sitk,
    assert_same_grid,
    corners,
    nibabel_file,
    pydicom_data,
    pydicom_file,
    rotation,
    write_dicom_series,
    write_image,
)

from napari_consign.io import GeometryWarning, read_volume, write_nifti

sitk = pytest.importorskip("SimpleITK")


@dataclass
class Case:
    path: str
    reference: object  # SimpleITK image of the original file, on its own grid
    frame: int | None = None
    warns: tuple[str, ...] = ()  # substrings of the expected GeometryWarnings


def _series_reference(folder: Path, uid: str | None = None):
    r = sitk.ImageSeriesReader()
    files = (
        r.GetGDCMSeriesFileNames(str(folder), uid) if uid else r.GetGDCMSeriesFileNames(str(folder))
    )
    r.SetFileNames(files)
    return r.Execute()


def _random(rng, shape, lo=0, hi=2000):
    return rng.integers(lo, hi, shape).astype(np.int16)


PERMUTED = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)  # index axes x, y, z point P, S, L
FLIPPED = np.diag([-1.0, 1.0, -1.0]) @ np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], float)


def build_case(name: str, tmp: Path, rng: np.random.Generator) -> Case:
    real_dicom = {
        "CT_small": "CT_small.dcm",
        "MR_small": "MR_small.dcm",
        "MR_small_RLE": "MR_small_RLE.dcm",
        "MR_small_jpeg_ls": "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_j2k": "MR_small_jp2klossless.dcm",
        "MR_small_bigendian": "MR_small_bigendian.dcm",
        "MR_small_implicit": "MR_small_implicit.dcm",
        "deflated_dcm": "image_dfl.dcm",
    }
    if name in real_dicom:
        p = pydicom_file(real_dicom[name])
        return Case(p, sitk.ReadImage(p))
    if name == "rtdose_multiframe":
        p = pydicom_file("rtdose.dcm")
        return Case(p, sitk.ReadImage(p), warns=("Multi-frame",))
    if name == "CT2_series":
        folder = pydicom_data() / "dicomdirtests" / "77654033" / "CT2"
        return Case(str(folder), _series_reference(folder), warns=("Uneven",))
    if name == "MR700_one_oblique_file":
        folder = pydicom_data() / "dicomdirtests" / "98892003" / "MR700"
        p = str(sorted(folder.iterdir())[0])
        return Case(p, sitk.ReadImage(p), warns=("Loaded only", "Oblique"))
    if name == "anatomical_nii":
        p = nibabel_file("anatomical.nii")
        return Case(p, sitk.ReadImage(p))
    if name == "example4d_frame1":
        p = nibabel_file("example4d.nii.gz")
        return Case(p, sitk.ReadImage(p)[:, :, :, 1], frame=1, warns=("Oblique",))
    if name == "nii_oblique":
        d = rotation(0.2, -0.15, 0.35)
        p = write_image(
            tmp / "obl.nii.gz",
            _random(rng, (6, 7, 8)),
            spacing=(0.7, 0.8, 2.0),
            origin=(-12.5, 40.25, 3.0),
            direction=d,
        )
        return Case(str(p), sitk.ReadImage(str(p)), warns=("Oblique",))
    if name == "nii_flipped":
        p = write_image(
            tmp / "flip.nii",
            _random(rng, (5, 6, 7)),
            spacing=(1.0, 1.5, 2.5),
            origin=(80.0, 90.0, -30.0),
            direction=np.diag([-1.0, 1.0, -1.0]),
        )
        return Case(str(p), sitk.ReadImage(str(p)))
    if name == "nii_permuted_flipped":
        p = write_image(
            tmp / "perm.nii.gz",
            _random(rng, (5, 6, 7)),
            spacing=(0.9, 1.2, 3.0),
            origin=(5.0, -6.0, 7.0),
            direction=FLIPPED,
        )
        return Case(str(p), sitk.ReadImage(str(p)))
    if name == "mha_permuted_oblique":
        p = write_image(
            tmp / "perm.mha",
            _random(rng, (4, 6, 5)),
            spacing=(0.5, 0.6, 0.7),
            origin=(1.0, 2.0, 3.0),
            direction=rotation(0.1, 0.0, 0.0) @ PERMUTED,
        )
        return Case(str(p), sitk.ReadImage(str(p)), warns=("Oblique",))
    if name == "mhd_plain":
        p = write_image(tmp / "plain.mhd", _random(rng, (3, 4, 5)), spacing=(2.0, 2.0, 4.0))
        return Case(str(p), sitk.ReadImage(str(p)))
    if name == "nrrd_flipped":
        p = write_image(
            tmp / "flip.nrrd",
            _random(rng, (4, 5, 6)),
            spacing=(1.0, 1.0, 1.5),
            origin=(0.5, 0.5, 0.5),
            direction=np.diag([1.0, -1.0, -1.0]),
        )
        return Case(str(p), sitk.ReadImage(str(p)))
    if name == "mha_2d_rotated":
        p = write_image(
            tmp / "slice.mha",
            _random(rng, (9, 7)),
            spacing=(0.3, 0.4),
            origin=(10.0, 20.0),
            direction=[[0.0, -1.0], [1.0, 0.0]],
        )
        return Case(str(p), sitk.ReadImage(str(p)))
    if name.startswith("series_"):
        kinds = {
            "series_axial": dict(row=(1, 0, 0), col=(0, 1, 0)),
            "series_oblique": dict(
                row=tuple(rotation(0.1, 0.2, 0.3)[:, 0]), col=tuple(rotation(0.1, 0.2, 0.3)[:, 1])
            ),
            "series_sagittal_reversed": dict(row=(0, 1, 0), col=(0, 0, -1), reverse_instances=True),
            "series_coronal_flipped": dict(row=(-1, 0, 0), col=(0, 0, -1), reverse_instances=True),
        }
        kind = name.removesuffix("_from_one_file")
        folder = tmp / kind
        paths = write_dicom_series(folder, _random(rng, (5, 6, 7)), **kinds[kind])
        ref = _series_reference(folder)
        warns = ("Oblique",) if "oblique" in name else ()
        if name.endswith("_from_one_file"):
            return Case(str(paths[2]), ref, warns=warns)
        return Case(str(folder), ref, warns=warns)
    if name == "multiframe_dcm":
        img = sitk.GetImageFromArray(rng.integers(0, 3000, (4, 6, 5)).astype(np.uint16))
        img.SetSpacing((0.5, 0.6, 2.5))
        img.SetOrigin((1.0, 2.0, 3.0))
        p = tmp / "mf.dcm"
        sitk.WriteImage(img, str(p))
        return Case(str(p), sitk.ReadImage(str(p)), warns=("Multi-frame",))
    raise KeyError(name)


CASES = [
    "CT_small",
    "MR_small",
    "MR_small_RLE",
    "MR_small_jpeg_ls",
    "MR_small_j2k",
    "MR_small_bigendian",
    "MR_small_implicit",
    "deflated_dcm",
    "rtdose_multiframe",
    "CT2_series",
    "MR700_one_oblique_file",
    "anatomical_nii",
    "example4d_frame1",
    "nii_oblique",
    "nii_flipped",
    "nii_permuted_flipped",
    "mha_permuted_oblique",
    "mhd_plain",
    "nrrd_flipped",
    "mha_2d_rotated",
    "series_axial",
    "series_oblique",
    "series_sagittal_reversed",
    "series_coronal_flipped",
    "series_axial_from_one_file",
    "series_sagittal_reversed_from_one_file",
    "multiframe_dcm",
]


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
