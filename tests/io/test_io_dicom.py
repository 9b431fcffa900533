"""DICOM series: geometry as written, series choice, single files, lists, pydicom's dicomdirtests
(every stack, DICOMDIR records, extensionless and nested copies), bounded folder search."""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from io_helpers import (
    assert_files_land,
    pydicom_data,
    pydicom_file,
    rotation,
    write_dicom_series,
)

from napari_consign.io import (
    DicomSeriesError,
    GeometryWarning,
    UnsupportedImageError,
    list_dicom_series,
    read_volume,
)

sitk = pytest.importorskip("SimpleITK")


def _vol(rng, n=5):
    return rng.integers(0, 1000, (n, 6, 7)).astype(np.int16)


@pytest.mark.parametrize(
    ("row", "col", "reverse"),
    [
        ((1, 0, 0), (0, 1, 0), False),  # axial
        ((0, 1, 0), (0, 0, -1), True),  # sagittal, instance numbers against the normal
        ((-1, 0, 0), (0, 0, -1), False),  # coronal, flipped rows
        (tuple(rotation(0.3, -0.2, 0.1)[:, 0]), tuple(rotation(0.3, -0.2, 0.1)[:, 1]), True),
    ],
)
def test_synthetic_series_geometry_as_written(tmp_path, rng, row, col, reverse):
    spacing, origin = (0.8, 0.9, 2.5), (-100.5, -80.25, 30.125)
    write_dicom_series(
        tmp_path / "s",
        _vol(rng),
        spacing=spacing,
        origin=origin,
        row=row,
        col=col,
        reverse_instances=reverse,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeometryWarning)
        vol = read_volume(tmp_path / "s")
    src = vol.geometry.source
    normal = np.cross(row, col)
    assert src.size == (7, 6, 5)
    np.testing.assert_allclose(src.spacing, spacing, atol=1e-6)
    np.testing.assert_allclose(src.origin, origin, atol=1e-5)
    np.testing.assert_allclose(src.direction_matrix, np.column_stack([row, col, normal]), atol=1e-6)
    # the last slice lies where it was written, along +normal
    np.testing.assert_allclose(
        src.index_to_physical((0, 0, 4)), np.asarray(origin) + 4 * 2.5 * normal, atol=1e-5
    )


def test_folder_with_several_series_takes_the_largest_and_lists_the_others(tmp_path, rng):
    folder = tmp_path / "study"
    write_dicom_series(folder, _vol(rng, 5), description="big", prefix="A", series_number=3)
    small = write_dicom_series(folder, _vol(rng, 3), description="small", prefix="B")
    write_dicom_series(folder, _vol(rng, 1), description="scout", prefix="C", modality="MR")
    (folder / "notes.txt").write_text("not dicom")
    vol = read_volume(folder)
    assert vol.array.shape[0] == 5 and vol.name == "big"
    assert [s.description for s in vol.other_series] == ["small", "scout"]
    assert len(vol.notes) == 1
    assert "holds 3 DICOM series" in vol.notes[0] and "'small'" in vol.notes[0]
    # the caller chooses another series by UID
    uid = vol.other_series[0].uid
    chosen = read_volume(folder, series_uid=uid)
    assert chosen.array.shape[0] == 3 and chosen.geometry.series_uid == uid
    assert chosen.geometry.source_path == str(folder)
    assert [s.uid for s in list_dicom_series(folder)][1] == uid
    # one file of a series loads that whole series
    one = read_volume(small[1])
    assert one.array.shape[0] == 3 and one.geometry.series_uid == uid
    with pytest.raises(DicomSeriesError, match=r"is not in this folder.*Available series"):
        read_volume(folder, series_uid="1.2.3.4")


def test_list_of_files_of_one_series_and_of_two(tmp_path, rng):
    a = write_dicom_series(tmp_path / "a", _vol(rng, 4))
    b = write_dicom_series(tmp_path / "b", _vol(rng, 2))
    assert read_volume([str(p) for p in a]).array.shape[0] == 4
    with pytest.raises(DicomSeriesError, match=r"Mixed stack: the 6 files belong to 2 different"):
        read_volume([str(p) for p in a + b])


def test_mr700_projections_are_seven_stacks_each_opens_in_place():
    folder = pydicom_data() / "dicomdirtests" / "98892003" / "MR700"
    with pytest.warns(GeometryWarning, match="Oblique scan"):
        vol = read_volume(folder)
    stacks = [vol_stack for vol_stack in list_dicom_series(folder)]
    assert len(stacks) == 7 and all(s.n_slices == 1 and not s.problem for s in stacks)
    assert len({s.uid for s in stacks}) == 1 and [s.stack for s in stacks] == list(range(1, 8))
    assert len(vol.other_series) == 6 and "holds 1 DICOM series in 7 stacks" in vol.notes[0]
    for stack in stacks:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GeometryWarning)
            one = read_volume(folder, series_uid=stack.key)
        assert assert_files_land(one, stack.files) == 1
    # one file dropped on its own opens its stack (itself), warning only about obliqueness
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = read_volume(sorted(folder.iterdir())[0])
    messages = [str(w.message) for w in caught if w.category is GeometryWarning]
    assert len(messages) == 1 and "40.8 degrees" in messages[0]
    assert vol.array.shape == (16, 16, 1)  # a sagittal-ish slice: x is its slice axis in LPS


def test_localiser_folder_prefers_a_whole_series_to_one_plane_of_a_pilot():
    folder = pydicom_data() / "dicomdirtests" / "98892003" / "MR2"
    vol = read_volume(folder)
    assert vol.name == "FAST LOCALIZER"
    assert len(vol.other_series) == 6  # two tri-planar pilots: 3 one-slice stacks each
    assert {s.orientation for s in vol.other_series} == {"axial", "coronal", "sagittal"}


def test_single_file_in_a_busy_folder_ignores_copies():
    # MR_small.dcm shares its folder with 7 copies of itself in other transfer syntaxes
    vol = read_volume(pydicom_file("MR_small.dcm"))
    assert vol.array.shape == (1, 64, 64)


def test_multiframe_rgb_and_other_colour_dicom_are_refused(tmp_path):
    for name in ("SC_rgb_rle.dcm", "examples_ybr_color.dcm"):
        src = pydicom_file(name)
        shutil.copy(src, tmp_path / name)  # alone in a folder: no siblings to scan
        with pytest.raises(UnsupportedImageError, match=r"3 components per voxel.*single-channel"):
            read_volume(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "modality"),
    [
        ("CT_small.dcm", "CT"),  # explicit VR little endian
        ("MR_small_implicit.dcm", "MR"),
        ("MR_small_bigendian.dcm", "MR"),
        ("MR_small_expb.dcm", "MR"),
        ("rtstruct.dcm", "RTSTRUCT"),  # no preamble, no file meta
        ("rtplan.dcm", "RTPLAN"),
    ],
)
def test_pure_python_dataset_peek(name, modality, monkeypatch):
    """The fallback used when pydicom (a test-only dependency) is not installed."""
    from napari_consign.io import dicom

    path = pydicom_file(name)
    with open(path, "rb") as f:
        assert dicom._parse_head(f.read(65536)).get(0x00080060) == modality
    monkeypatch.setitem(sys.modules, "pydicom", None)
    assert dicom.peek_dataset(path)[0] == modality
    assert dicom.peek_dataset(path + ".missing") == ("", "")


def test_every_stack_of_dicomdirtests_opens_where_sitk_says_or_says_why():
    from napari_consign.io.dicom import scan_folder

    root = pydicom_data() / "dicomdirtests"
    stacks, skipped = scan_folder(root)  # through the DICOMDIR's records
    assert len(stacks) == 25 and not skipped
    assert len({s.uid for s in stacks}) == 13  # 13 series split into 25 stacks
    opened = 0
    for stack in stacks:
        assert not stack.problem, stack.summary()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GeometryWarning)
            vol = read_volume(root, series_uid=stack.key)
        assert assert_files_land(vol, stack.files) == len(stack.files), stack.summary()
        opened += 1
    assert opened == 25


def test_dicomdir_records_and_the_folder_walk_agree(tmp_path):
    from napari_consign.io.dicom import scan_folder

    root = pydicom_data() / "dicomdirtests"
    by_records = {s.key: s.files for s in scan_folder(root / "DICOMDIR")[0]}
    copy = tmp_path / "walk"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("DICOMDIR*", "TINY_ALPHA"))
    by_walk = {
        s.key: tuple(str(root / Path(f).relative_to(copy)) for f in s.files)
        for s in scan_folder(copy)[0]
    }
    assert by_walk == by_records


def test_extensionless_and_renamed_copies_are_found_in_nested_folders(tmp_path, rng):
    from napari_consign.io.dicom import scan_folder

    deep = tmp_path / "CD" / "PATIENT" / "STUDY" / "SERIES"
    files = write_dicom_series(deep, _vol(rng, 4), extension="")
    shutil.copy(pydicom_file("CT_small.dcm"), tmp_path / "CD" / "image.bin")
    (tmp_path / "CD" / "EMPTY").write_bytes(b"")  # an empty file is ignored
    calls = []
    stacks, _ = scan_folder(tmp_path, progress=lambda d, t: calls.append((d, t)))
    assert sorted(s.n_slices for s in stacks) == [1, 4]
    assert calls and calls[-1] == (calls[-1][1], calls[-1][1])  # ends at done == total
    vol = read_volume(tmp_path)
    assert assert_files_land(vol, files) == 4


def test_preamble_less_files_are_named_as_skipped(tmp_path):
    from napari_consign.io.dicom import is_dicom_file, looks_like_raw_dicom, scan_folder

    raw = pydicom_file("ExplVR_LitEndNoMeta.dcm")  # a data set without preamble or meta
    shutil.copy(raw, tmp_path / "0001")
    assert looks_like_raw_dicom(tmp_path / "0001") and not is_dicom_file(tmp_path / "0001")
    stacks, skipped = scan_folder(tmp_path)
    assert stacks == [] and skipped == ["0001 (no DICOM file preamble; re-export it)"]
    with pytest.raises(
        DicomSeriesError, match=r"No readable DICOM image series.*no DICOM file pre"
    ):
        read_volume(tmp_path)


def test_search_depth_and_file_count_are_bounded(tmp_path, monkeypatch):
    from napari_consign.io.dicom import find_files, scan

    deep = tmp_path.joinpath(*"abcdefghijk")
    deep.mkdir(parents=True)
    (deep / "x").write_bytes(b"x")
    files, truncated = find_files(tmp_path)
    assert files == [] and not truncated  # 11 levels down: beyond MAX_DEPTH
    for i in range(30):
        (tmp_path / f"f{i:02d}").write_bytes(b"x")
    files, truncated = find_files(tmp_path, max_files=10)
    assert len(files) == 10 and truncated
    monkeypatch.setattr(scan, "MAX_FILES", 10)
    monkeypatch.setattr(scan, "find_files", lambda root: find_files(root, max_files=10))
    _stacks, skipped = scan.scan_folder(tmp_path)
    assert any("search stopped after 10 files" in s for s in skipped)
