"""Series split into stacks, and the geometry of series written here with SimpleITK: oblique,
gantry-tilted, non-uniform spacing, missing slice, duplicate positions, echoes, bad headers.
Every loaded file lands where SimpleITK's physical points say, or the message says why not."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from io_helpers import assert_files_land, rotation, volume_image, write_dicom_series

from napari_consign.io import (
    DicomSeriesError,
    GeometryWarning,
    UnsupportedImageError,
    list_dicom_series,
    read_volume,
)
from napari_consign.io.dicom import check_size, scan_folder

sitk = pytest.importorskip("SimpleITK")


def _vol(rng, n=5, y=6, x=7):
    return rng.integers(0, 1000, (n, y, x)).astype(np.int16)


def _quiet_read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeometryWarning)
        return read_volume(path, **kw)


def test_oblique_series_lands_where_sitk_says(tmp_path, rng):
    r = rotation(0.3, -0.2, 0.1)
    files = write_dicom_series(tmp_path, _vol(rng), row=tuple(r[:, 0]), col=tuple(r[:, 1]))
    with pytest.warns(GeometryWarning, match="Oblique scan"):
        vol = read_volume(tmp_path)
    assert vol.array.shape == (5, 6, 7) or sorted(vol.array.shape) == [5, 6, 7]
    assert assert_files_land(vol, files) == 5


def test_gantry_tilt_is_refused_with_the_angle(tmp_path, rng):
    tilt = np.radians(15)
    positions = [(0.0, k * 2.5 * np.sin(tilt), k * 2.5 * np.cos(tilt)) for k in range(5)]
    write_dicom_series(tmp_path, _vol(rng), positions=positions)
    [stack] = list_dicom_series(tmp_path)
    assert "gantry tilt" in stack.problem
    with pytest.raises(DicomSeriesError, match=r"sheared by 15 degrees.*gantry tilt.*dcm2niix"):
        read_volume(tmp_path)


def test_missing_slice_is_resampled_and_acquired_slices_stay_in_place(tmp_path, rng):
    z = [0.0, 2.5, 5.0, 10.0, 12.5]  # the slice at 7.5 is missing
    data = _vol(rng)
    files = write_dicom_series(tmp_path, data, positions=[(-10, 20, v) for v in z])
    with pytest.warns(GeometryWarning, match=r"gaps of 2.5 to 5 mm.*1 of 6 slices are interp"):
        vol = read_volume(tmp_path)
    assert vol.array.shape == (6, 6, 7)
    assert assert_files_land(vol, files) == 5  # every acquired slice on the grid, values intact
    np.testing.assert_allclose(vol.array[3], (data[2] + data[3].astype(float)) / 2, atol=1e-3)
    assert vol.geometry.spacing == pytest.approx((0.8, 0.9, 2.5))


def test_non_uniform_spacing_is_resampled_by_linear_interpolation(tmp_path, rng):
    z = np.array([0.0, 2.0, 4.0, 7.0, 9.0])
    data = _vol(rng).astype(float)
    files = write_dicom_series(tmp_path, data.astype(np.int16), positions=[(0, 0, v) for v in z])
    with pytest.warns(GeometryWarning, match=r"Uneven DICOM slice positions.*gaps of 2 to 3 mm"):
        vol = read_volume(tmp_path)
    img = volume_image(vol)
    assert assert_files_land(vol, [files[0], files[-1]]) == 2  # first and last on the grid
    for k in range(vol.array.shape[0]):
        depth = img.TransformIndexToPhysicalPoint((0, 0, k))[2]
        expected = np.array(
            [np.interp(depth, z, data[:, j, i]) for j in range(6) for i in range(7)]
        )
        np.testing.assert_allclose(vol.array[k].ravel(), expected, atol=1e-3)


def test_regular_series_has_no_geometry_warning(tmp_path, rng):
    files = write_dicom_series(tmp_path, _vol(rng), spacing=(0.7, 0.7, 1.25))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeometryWarning)
        vol = read_volume(tmp_path)
    assert assert_files_land(vol, files) == 5


def test_duplicate_positions_without_a_telling_tag_are_refused(tmp_path, rng):
    uid = "1.2.826.0.1.3680043.8.498.78"
    write_dicom_series(tmp_path, _vol(rng, 3), uid=uid, prefix="E1")
    write_dicom_series(tmp_path, _vol(rng, 3), uid=uid, prefix="E2")  # same positions, no tag
    with pytest.raises(DicomSeriesError, match=r"6 files at only 3 distinct slice positions"):
        read_volume(tmp_path)


def test_echoes_at_the_same_positions_become_two_stacks(tmp_path, rng):
    uid = "1.2.826.0.1.3680043.8.498.79"
    e1 = write_dicom_series(
        tmp_path, _vol(rng, 4), uid=uid, prefix="E1", extra_tags={"0018|0086": "1"}
    )
    e2 = write_dicom_series(
        tmp_path, _vol(rng, 4), uid=uid, prefix="E2", extra_tags={"0018|0086": "2"}
    )
    stacks = list_dicom_series(tmp_path)
    assert [s.key for s in stacks] == [f"{uid}:1", f"{uid}:2"]
    assert all(s.n_slices == 4 and not s.problem for s in stacks)
    for stack in stacks:
        vol = read_volume(tmp_path, series_uid=stack.key)
        files = e1 if stack.files[0] in map(str, e1) else e2
        assert assert_files_land(vol, files) == 4


def test_slabs_far_apart_and_other_sizes_are_separate_stacks(tmp_path, rng):
    uid = "1.2.826.0.1.3680043.8.498.77"
    big = write_dicom_series(tmp_path, _vol(rng, 5), uid=uid, prefix="A")
    write_dicom_series(tmp_path, _vol(rng, 2), uid=uid, prefix="B", origin=(-100.5, -80.25, 300))
    write_dicom_series(tmp_path, _vol(rng, 1, 8, 8), uid=uid, prefix="X", origin=(0, 0, 200))
    vol = read_volume(tmp_path)
    assert vol.array.shape[0] == 5 and assert_files_land(vol, big) == 5
    assert sorted(s.n_slices for s in vol.other_series) == [1, 2]
    assert "holds 1 DICOM series in 3 stacks" in vol.notes[0]
    eight = next(s for s in vol.other_series if s.slices[0].size[:2] == (8, 8))
    assert read_volume(tmp_path, series_uid=eight.key).array.shape == (1, 8, 8)


def _edit(path, **values):
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.dcmread(str(path))
    for key, value in values.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(str(path))


def test_zero_pixel_spacing_is_refused_not_taken_as_1mm(tmp_path, rng):
    files = write_dicom_series(tmp_path, _vol(rng, 3))
    for f in files:
        _edit(f, PixelSpacing=[0, 0])
    with pytest.raises(
        DicomSeriesError, match=r"Pixel Spacing \(0028,0030\) is '0\.0\\0\.0'.*unknown"
    ):
        read_volume(tmp_path)


def test_missing_pixel_spacing_is_said(tmp_path, rng):
    files = write_dicom_series(tmp_path, _vol(rng, 3))
    for f in files:
        _edit(f, PixelSpacing=None)
    with pytest.warns(GeometryWarning, match=r"No Pixel Spacing.*pixel units, not millimetres"):
        read_volume(tmp_path)


def test_missing_position_gives_single_images_not_1mm_slices(tmp_path, rng):
    files = write_dicom_series(tmp_path, _vol(rng, 3))
    for f in files:
        _edit(f, ImagePositionPatient=None)
    stacks = list_dicom_series(tmp_path)
    assert [s.n_slices for s in stacks] == [1, 1, 1]  # never stacked at a guessed spacing
    vol = _quiet_read(tmp_path)
    assert vol.array.shape == (1, 6, 7)
    assert "3 stacks" in vol.notes[0]


def test_a_tiny_file_claiming_60000_squared_pixels_is_refused_before_decoding(tmp_path, rng):
    [f] = write_dicom_series(tmp_path, _vol(rng, 1))
    _edit(f, Rows=60000, Columns=60000)
    with pytest.raises(DicomSeriesError, match=r"announces 60000 x 60000 x 1 pixels.*holds only"):
        read_volume(f)
    # the memory check, which compressed files (no byte count to compare) rely on
    [stack], _ = scan_folder(tmp_path)
    unchecked = stack.__class__(stack.uid, stack.slices)  # without the header problem
    with pytest.raises(UnsupportedImageError, match=r"60000 x 60000 x 1 voxels.*2,147,483,647"):
        check_size(unchecked, available=10**12)
    _edit(f, Rows=20000, Columns=20000)
    [stack], _ = scan_folder(tmp_path)
    unchecked = stack.__class__(stack.uid, stack.slices)
    with pytest.raises(UnsupportedImageError, match=r"0.8 GB decoded.*only 1 GB of memory"):
        check_size(unchecked, available=10**9)
    check_size(unchecked, available=10**10)  # fits


def test_display_range_by_modality(rng):
    from napari_consign.io.display import display_kwargs, percentile_limits

    ct = rng.normal(0, 500, (4, 30, 30))
    assert display_kwargs(ct, "CT") == {"contrast_limits": (-160.0, 240.0)}
    mr = rng.gamma(2.0, 100.0, (4, 30, 30))
    mr[0, 0, 0] = 1e6  # one hot voxel must not set the range
    lo, hi = display_kwargs(mr, "MR")["contrast_limits"]
    assert (lo, hi) == pytest.approx(np.percentile(mr, (0.5, 99.5)))
    assert hi < 1e5
    assert display_kwargs(mr, "") == {}  # non-DICOM: napari's default
    assert percentile_limits(np.full((3, 3), 7.0)) == (7.0, 8.0)
