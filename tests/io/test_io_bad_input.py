"""Bad input: the napari probe declines quietly, the reader and writer fail with clear messages."""

from __future__ import annotations

import gzip
import shutil
import sys
import warnings

import numpy as np
import pytest
from io_helpers import nibabel_file, pydicom_data, pydicom_file, write_dicom_series, write_image

from napari_consign.io import (
    ConsignIOError,
    DicomSeriesError,
    Geometry,
    GeometryWarning,
    UnreadableImageError,
    UnsupportedImageError,
    WriteRefusedError,
    read_volume,
    write_nifti,
)
from napari_consign.io._reader import get_reader, read_layers

sitk = pytest.importorskip("SimpleITK")

NON_IMAGE_DICOM = ["rtstruct.dcm", "test-SR.dcm", "rtplan.dcm", "waveform_ecg.dcm", "reportsi.dcm"]


@pytest.fixture
def nifti(tmp_path, rng):
    return write_image(tmp_path / "scan.nii.gz", rng.integers(0, 500, (8, 9, 10)).astype(np.int16))


# ---------------------------------------------------------------------------------------------
# get_reader: cheap, never raises, None for what it cannot read
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x.nii", "x.nii.gz", "x.dcm", "x.mha", "x.mhd", "x.nrrd", "x"])
@pytest.mark.parametrize("content", [b"", b"junk" * 100, bytes(range(256)) * 4])
def test_get_reader_declines_junk_files(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    assert get_reader(str(p)) is None


def test_get_reader_declines_folders_and_odd_paths(tmp_path, nifti):
    empty = tmp_path / "empty"
    empty.mkdir()
    text = tmp_path / "text"
    text.mkdir()
    (text / "a.txt").write_text("hello")
    (text / "b.dcm").write_bytes(b"\0" * 300)
    zarr_v2 = tmp_path / "image.zarr"
    zarr_v2.mkdir()
    (zarr_v2 / ".zgroup").write_text('{"zarr_format": 2}')
    zarr_v3 = tmp_path / "plain"
    zarr_v3.mkdir()
    (zarr_v3 / "zarr.json").write_text("{}")
    write_dicom_series(zarr_v3, np.zeros((1, 4, 4), np.int16))  # DICOM inside a zarr store
    for path in (empty, text, zarr_v2, zarr_v3, tmp_path / "missing.nii", tmp_path / "missing"):
        assert get_reader(str(path)) is None, path
    assert get_reader([]) is None
    assert get_reader(123) is None  # type: ignore[arg-type]
    assert get_reader([str(nifti), str(nifti)]) is None  # cannot stack NIfTI files
    assert get_reader([str(nifti)]) is read_layers  # a one-element list is the file


@pytest.mark.parametrize("name", NON_IMAGE_DICOM)
def test_get_reader_declines_non_image_dicom(name, tmp_path):
    src = pydicom_file(name)
    assert get_reader(src) is None
    folder = tmp_path / "only_non_image"
    folder.mkdir()
    shutil.copy(src, folder / "x.dcm")
    assert get_reader(str(folder)) is None


def test_get_reader_declines_nifti2():
    assert get_reader(nibabel_file("example_nifti2.nii.gz")) is None


def test_get_reader_accepts_real_inputs(tmp_path, nifti, rng):
    series = write_dicom_series(tmp_path / "s", rng.integers(0, 9, (2, 4, 4)).astype(np.int16))
    accepted = [
        str(nifti),
        pydicom_file("CT_small.dcm"),
        str(pydicom_data() / "dicomdirtests" / "77654033" / "CT2"),
        str(tmp_path / "s"),
        [str(p) for p in series],
        nibabel_file("example4d.nii.gz"),  # accepted; refused with a clear message when read
    ]
    for path in accepted:
        assert get_reader(path) is read_layers, path


# ---------------------------------------------------------------------------------------------
# reading: clear messages
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_truncated_files(tmp_path, rng, suffix):
    good = write_image(
        tmp_path / f"good{suffix}", rng.integers(0, 999, (20, 30, 40)).astype(np.int16)
    )
    raw = good.read_bytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(raw[: len(raw) // 2])
    assert get_reader(str(bad)) is read_layers  # the header looks fine: accepted...
    with pytest.raises(UnreadableImageError, match=r"truncated"):
        read_layers(str(bad))  # ...and refused with a clear message


def test_corrupt_gzip_body(tmp_path, nifti):
    raw = bytearray(nifti.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 64] = b"\x00" * 64
    bad = tmp_path / "corrupt.nii.gz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(UnreadableImageError) as err:
        read_volume(bad)
    assert str(bad) in str(err.value)
    assert "Re-export" in err.value.hint


def test_truncated_dicom():
    with pytest.raises(UnreadableImageError, match=r"Could not read the DICOM file.*truncated"):
        read_volume(pydicom_file("MR_truncated.dcm"))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("test-SR.dcm", "a structured report (Modality SR)"),
        ("rtplan.dcm", "an RT plan (Modality RTPLAN)"),
        ("waveform_ecg.dcm", "an ECG waveform (Modality ECG)"),
    ],
)
def test_non_image_dicom_messages(name, kind, dataset_peek):
    path = pydicom_file(name)
    dataset_peek()
    with pytest.raises(UnsupportedImageError, match=r"without pixel data.*not an image") as err:
        read_volume(path)
    assert kind in str(err.value)


@pytest.fixture(params=["pydicom", "pure_python"])
def dataset_peek(request, monkeypatch):
    """Call it after finding the test files: with the "pure_python" param, pydicom (a test-only
    dependency) is made unimportable, so the product's pure-Python fallback is what runs."""

    def start() -> None:
        if request.param == "pure_python":
            monkeypatch.setitem(sys.modules, "pydicom", None)  # `import pydicom` fails

    return start


def test_rtstruct_without_preamble_says_what_it_is(dataset_peek):
    src = pydicom_file("rtstruct.dcm")  # shipped without the 128-byte preamble and 'DICM'
    dataset_peek()
    assert get_reader(src) is None
    with pytest.raises(UnsupportedImageError) as err:
        read_volume(src)
    msg = str(err.value)
    assert "an RT structure set (Modality RTSTRUCT), not an image" in msg
    assert "without the file preamble" in msg and "no 'DICM' marker" not in msg
    assert "Open the image series it refers to" in err.value.hint


def test_rtstruct_with_preamble_says_what_it_is(tmp_path, dataset_peek):
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.dcmread(pydicom_file("rtstruct.dcm"), force=True)
    out = tmp_path / "rtstruct_part10.dcm"
    ds.save_as(out, enforce_file_format=True)
    dataset_peek()
    assert out.read_bytes()[128:132] == b"DICM"
    assert get_reader(str(out)) is None
    with pytest.raises(
        UnsupportedImageError,
        match=r"without pixel data: an RT structure set \(Modality RTSTRUCT\), not an image",
    ):
        read_volume(out)


def test_image_dataset_without_preamble(tmp_path, dataset_peek):
    raw = open(pydicom_file("CT_small.dcm"), "rb").read()
    bare = tmp_path / "no_preamble.dcm"
    bare.write_bytes(raw[132:])  # file meta and data set, no preamble, no 'DICM'
    dataset_peek()
    assert get_reader(str(bare)) is None
    with pytest.raises(UnreadableImageError) as err:
        read_volume(bare)
    assert "DICOM data set (Modality CT) without the Part 10 file preamble" in str(err.value)
    assert "enforce_file_format=True" in err.value.hint


def test_junk_dcm_is_not_a_dicom_file(tmp_path, dataset_peek):
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(bytes(range(256)) * 4)
    dataset_peek()
    with pytest.raises(UnreadableImageError, match=r"is not a DICOM file \(no 'DICM' marker"):
        read_volume(junk)


def test_empty_and_non_dicom_folders(tmp_path):
    with pytest.raises(DicomSeriesError, match=r"No readable DICOM image series.*0 file\(s\)"):
        read_volume(tmp_path)
    (tmp_path / "a.txt").write_text("x")
    shutil.copy(pydicom_file("test-SR.dcm"), tmp_path / "sr.dcm")
    with pytest.raises(DicomSeriesError, match=r"2 file\(s\) checked.*image slices"):
        read_volume(tmp_path)


def test_zarr_folder(tmp_path):
    (tmp_path / ".zarray").write_text("{}")
    with pytest.raises(UnsupportedImageError, match=r"zarr"):
        read_volume(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(UnreadableImageError, match=r"No such file or folder"):
        read_volume(tmp_path / "nope.nii.gz")


def test_nifti2_message():
    with pytest.raises(UnreadableImageError, match=r"NIfTI-2"):
        read_volume(nibabel_file("example_nifti2.nii.gz"))


def test_4d_is_refused_with_its_shape_and_a_way_out():
    path = nibabel_file("example4d.nii.gz")
    with pytest.raises(UnsupportedImageError) as err:
        read_layers(path)
    msg = str(err.value)
    assert "4D, shape (2, 24, 96, 128) as (t, z, y, x)" in msg
    assert "frame=0" in msg and "Extract one frame" in msg
    with pytest.raises(UnsupportedImageError, match=r"Frame 5 requested.*2 frames"):
        read_volume(path, frame=5)


def test_4d_with_one_frame_loads_as_3d(tmp_path, rng):
    p = write_image(tmp_path / "t1.nii.gz", rng.integers(0, 9, (1, 3, 4, 5)).astype(np.int16))
    assert read_volume(p).array.shape == (3, 4, 5)


def test_rgb_is_refused(tmp_path):
    p = write_image(tmp_path / "rgb.mha", np.zeros((2, 4, 5, 3), np.uint8), vector=True)
    with pytest.raises(
        UnsupportedImageError, match=r"3 components per voxel \(RGB colour, 2 x 4 x 5"
    ):
        read_layers(str(p))


def test_list_mixing_nifti_and_dicom(nifti):
    with pytest.raises(DicomSeriesError, match=r"Cannot stack 2 files"):
        read_volume([str(nifti), pydicom_file("CT_small.dcm")])


def test_metaimage_without_its_voxel_file(tmp_path):
    p = tmp_path / "x.mhd"
    p.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\n"
        "ElementDataFile = missing.raw\n"
    )
    assert get_reader(str(p)) is read_layers
    with pytest.raises(ConsignIOError, match=r"voxel file 'missing.raw', which is not in"):
        read_layers(str(p))


# ---------------------------------------------------------------------------------------------
# writing: refusals
# ---------------------------------------------------------------------------------------------
def test_writer_never_overwrites_the_source_scan(nifti):
    vol = read_volume(nifti)
    before = nifti.read_bytes()
    with pytest.raises(WriteRefusedError, match=r"Refusing to overwrite the source scan"):
        write_nifti(nifti, np.zeros(vol.array.shape, np.uint8), vol.geometry, overwrite=True)
    assert nifti.read_bytes() == before


def test_writer_refuses_existing_files_unless_asked(tmp_path, nifti):
    vol = read_volume(nifti)
    target = tmp_path / "mask.nii.gz"
    mask = np.ones(vol.array.shape, np.uint8)
    write_nifti(target, mask, vol.geometry)
    with pytest.raises(WriteRefusedError, match=r"already exists.*overwrite=True"):
        write_nifti(target, mask * 2, vol.geometry)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(target))).max() == 1
    write_nifti(target, mask * 2, vol.geometry, overwrite=True)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(target))).max() == 2
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # no temporary files left


def test_writer_refusals(tmp_path, nifti):
    vol = read_volume(nifti)
    mask = np.zeros(vol.array.shape, np.uint8)
    with pytest.raises(WriteRefusedError, match=r"Not a NIfTI file name.*nii.gz"):
        write_nifti(tmp_path / "mask.png", mask, vol.geometry)
    with pytest.raises(WriteRefusedError, match=r"shape \(2, 2, 2\) does not match.*\(8, 9, 10\)"):
        write_nifti(tmp_path / "m.nii.gz", np.zeros((2, 2, 2)), vol.geometry)
    with pytest.raises(WriteRefusedError, match=r"does not exist"):
        write_nifti(tmp_path / "no" / "m.nii.gz", mask, vol.geometry)
    with pytest.raises(WriteRefusedError, match=r"Cannot store voxels of type complex"):
        write_nifti(tmp_path / "c.nii.gz", mask.astype(complex), vol.geometry)
    with pytest.raises(
        WriteRefusedError, match=r"Cannot write a 4D array of shape \(2, 8, 9, 10\)"
    ):
        write_nifti(tmp_path / "t.nii.gz", np.stack([mask, mask]), vol.geometry)


def test_writer_without_geometry_says_so(tmp_path):
    with pytest.warns(GeometryWarning, match=r"No source geometry.*identity"):
        out = write_nifti(tmp_path / "m.nii.gz", np.ones((2, 3, 4), bool))
    img = sitk.ReadImage(str(out))
    assert img.GetSize() == (4, 3, 2) and img.GetSpacing() == (1.0, 1.0, 1.0)
    assert img.GetPixelID() == sitk.sitkUInt8


def test_writer_keeps_2d_sources_2d(tmp_path, rng):
    src = write_image(
        tmp_path / "s.nii.gz",
        rng.integers(0, 9, (5, 6)).astype(np.int16),
        spacing=(0.5, 0.25),
        origin=(3.0, 4.0),
    )
    vol = read_volume(src)
    assert vol.array.shape == (1, 5, 6)
    out = write_nifti(tmp_path / "m.nii.gz", vol.array, vol.geometry)
    img = sitk.ReadImage(str(out))
    assert img.GetDimension() == 2 and img.GetSpacing() == (0.5, 0.25)


def test_geometry_shape_guard_for_identity(tmp_path):
    geom = Geometry.from_affine((2, 3, 4), np.eye(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_nifti(tmp_path / "ok.nii", np.zeros((2, 3, 4), np.int32), geom)


def test_gzip_helper_reads_real_nifti(nifti):
    # the truncation check must accept a complete file (exact byte count through gzip)
    from napari_consign.io.formats import nifti_truncation

    assert nifti_truncation(nifti) is None
    with gzip.open(nifti) as f:
        assert len(f.read()) >= 352
