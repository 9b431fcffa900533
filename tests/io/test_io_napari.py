"""The npe2 hooks in a real napari viewer: reader tuples, notifications, writer, manifest wiring.

``viewer.open(path, plugin="napari-consign")`` and ``npe2.read`` run over a representative set of
the round-trip cases (``io_cases.py``); ``get_reader`` is checked to stay cheap (no SimpleITK or
GDCM import, a bounded number of files sniffed).
"""

from __future__ import annotations

import numpy as np
import pytest
from io_cases import build_case
from io_helpers import (
    assert_layer_matches_sitk,
    assert_same_grid,
    corners,
    pydicom_data,
    pydicom_file,
    rotation,
    write_dicom_series,
    write_image,
)

from napari_consign.io import GEOMETRY_KEY, WriteRefusedError, geometry_from_metadata, layer_kwargs
from napari_consign.io._reader import _MAX_FOLDER_SNIFF, get_reader
from napari_consign.io._writer import write_labels

sitk = pytest.importorskip("SimpleITK")


def _oblique_nifti(tmp_path, rng):
    return write_image(
        tmp_path / "oblique.nii.gz",
        rng.integers(0, 900, (5, 6, 7)).astype(np.int16),
        spacing=(0.6, 0.7, 2.0),
        origin=(-30.0, 12.5, 8.0),
        direction=rotation(0.15, -0.1, 0.25) @ np.diag([-1.0, 1.0, 1.0]),
    )


def _records_since(start: int, severity: str) -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records[start:] if n.severity == severity]


def _n_records() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def _check_layer(layer, path_or_ref):
    ref = path_or_ref if not isinstance(path_or_ref, str) else sitk.ReadImage(path_or_ref)
    assert_layer_matches_sitk(layer, sitk.DICOMOrient(ref, "LPS"))
    assert geometry_from_metadata(layer.metadata) is not None


def test_reader_tuples_in_a_viewer_with_notifications(make_napari_viewer, tmp_path, rng):
    viewer = make_napari_viewer()
    oblique = str(_oblique_nifti(tmp_path, rng))
    folder = tmp_path / "study"
    write_dicom_series(folder, rng.integers(0, 9, (4, 5, 6)).astype(np.int16), prefix="A")
    write_dicom_series(folder, rng.integers(0, 9, (2, 5, 6)).astype(np.int16), prefix="B")
    series_ref = sitk.ReadImage(sorted(str(p) for p in folder.glob("A*")))  # positions sorted

    start = _n_records()
    reader = get_reader(oblique)
    assert reader is not None
    [(data, kwargs, kind)] = reader(oblique)
    assert kind == "image" and "affine" not in kwargs
    _check_layer(viewer.add_image(data, **kwargs), oblique)
    assert any("Oblique scan" in m for m in _records_since(start, "warning"))

    start = _n_records()
    [(data, kwargs, kind)] = get_reader(str(folder))(str(folder))
    _check_layer(viewer.add_image(data, **kwargs), series_ref)
    infos = _records_since(start, "info")
    assert any("holds 2 DICOM series" in m for m in infos), infos


def test_write_labels_hook_puts_a_labels_layer_on_the_source_grid(
    make_napari_viewer, tmp_path, rng
):
    viewer = make_napari_viewer()
    src = str(_oblique_nifti(tmp_path, rng))
    [(data, kwargs, _)] = get_reader(src)(src)
    image = viewer.add_image(data, **kwargs)
    mask = (data > np.median(data)).astype(np.uint8)
    geometry = geometry_from_metadata(image.metadata)
    labels = viewer.add_labels(mask, **layer_kwargs(geometry, name="mask"))
    _check_layer(labels, src)

    out = tmp_path / "mask.nii.gz"
    ldata, meta, _ = labels.as_layer_data_tuple()  # what napari passes to the writer
    assert write_labels(str(out), ldata, meta) == [str(out)]
    saved, ref = sitk.ReadImage(str(out)), sitk.ReadImage(src)
    assert_same_grid(saved, ref)
    expected = (sitk.GetArrayFromImage(ref) > np.median(data)).astype(np.uint8)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(saved), expected)
    # napari's Save dialog confirms overwrites, so the hook replaces the file...
    assert write_labels(str(out), ldata * 0, meta) == [str(out)]
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out))).max() == 0
    # ...but never the source scan
    with pytest.raises(WriteRefusedError, match=r"source scan"):
        write_labels(src, ldata, meta)


def test_write_labels_hook_without_geometry_uses_the_layer_transform(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        scale=(3.0, 0.5, 0.25),
        translate=(10.0, -5.0, 2.0),
        rotate=rotation(0.0, 0.0, 0.3),
    )
    assert GEOMETRY_KEY not in labels.metadata
    start = _n_records()
    out = tmp_path / "no_geometry.nii.gz"
    write_labels(str(out), *labels.as_layer_data_tuple()[:2])
    assert any("no source-scan geometry" in m for m in _records_since(start, "warning"))
    img = sitk.ReadImage(str(out))
    assert_layer_matches_sitk(labels, img)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), labels.data)

    plain = viewer.add_labels(np.ones((2, 3, 4), np.uint8))
    start = _n_records()
    write_labels(str(tmp_path / "plain.nii"), *plain.as_layer_data_tuple()[:2])
    assert any("identity" in m for m in _records_since(start, "warning"))


# A representative set of the round-trip cases: 2D, flipped, permuted, oblique, a series opened
# from one of its files, DICOM folders (written here and shipped with pydicom), real files. The
# quick tier opens the NPE2 cases (2D, permuted and flipped, oblique series, DICOM folder); the
# others run in the slow tier.
NPE2_CASES = ["mha_2d_rotated", "nii_permuted_flipped", "series_oblique", "MR2_folder"]
VIEWER_CASES = [
    name if name in NPE2_CASES else pytest.param(name, marks=pytest.mark.slow)
    for name in [
        "mha_2d_rotated",
        "nii_flipped",
        "nii_permuted_flipped",
        "mha_permuted_oblique",
        "nii_oblique",
        "series_axial_from_one_file",
        "series_sagittal_reversed_from_one_file",
        "series_coronal_flipped",
        "series_oblique",
        "CT2_series",
        "MR2_folder",
        "CT_small",
        "MR_small_expb",
        "anatomical_nii",
    ]
]


def _assert_places_like_sitk(layer, case) -> None:
    """data_to_world equals SimpleITK's TransformIndexToPhysicalPoint (z, y, x) to 1e-6, and the
    voxel shown at each corner is the source file's voxel at that world point."""
    ref = case.reference
    ref3 = sitk.JoinSeries(ref) if ref.GetDimension() == 2 else ref
    assert_layer_matches_sitk(layer, sitk.DICOMOrient(ref3, "LPS"), atol=1e-6)
    ref_arr = sitk.GetArrayFromImage(ref3)
    data = np.asarray(layer.data)
    for kji in corners(data.shape):
        world = np.asarray(layer.data_to_world(kji))
        ijk = ref3.TransformPhysicalPointToIndex(tuple(world[::-1]))
        assert ref_arr[ijk[::-1]] == data[kji]
    assert geometry_from_metadata(layer.metadata) is not None


@pytest.mark.parametrize("name", VIEWER_CASES)
def test_viewer_open_with_the_plugin(make_napari_viewer, tmp_path, rng, name):
    viewer = make_napari_viewer()
    case = build_case(name, tmp_path, rng)
    start = _n_records()
    layers = viewer.open(case.path, plugin="napari-consign")
    assert len(layers) == 1 and layers[0].ndim == 3
    _assert_places_like_sitk(layers[0], case)
    warned = _records_since(start, "warning")
    for expected in case.warns:
        assert any(expected in m for m in warned), (expected, warned)


@pytest.mark.parametrize("name", NPE2_CASES)
def test_npe2_read(tmp_path, rng, name):
    import npe2
    from napari.layers import Layer

    case = build_case(name, tmp_path, rng)
    tuples = npe2.read([case.path], stack=False, plugin_name="napari-consign")
    assert len(tuples) == 1
    data, kwargs, kind = tuples[0]
    assert kind == "image" and "affine" not in kwargs
    _assert_places_like_sitk(Layer.create(data, kwargs, kind), case)


_PROBE = """
import builtins, json, sys
from napari_consign.io import _reader
opened = []
real_open = builtins.open
def counting_open(file, *args, **kwargs):
    opened.append(str(file))
    return real_open(file, *args, **kwargs)
builtins.open = counting_open
out = {}
for key, path in json.loads(sys.argv[1]).items():
    opened.clear()
    reader = _reader.get_reader(path)
    out[key] = [reader is not None, len(opened), len(set(opened))]
heavy = ("SimpleITK", "gdcm", "_SimpleITK", "napari", "qtpy", "PyQt6", "torch", "pydicom")
out["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in heavy or "gdcm" in m.lower())
print(json.dumps(out))
"""


def test_get_reader_is_cheap_and_imports_no_simpleitk(tmp_path, rng):
    """Counts the files get_reader opens (no timing): a bounded number for any folder, at most
    three reads per file (preamble, pixel data tag, DICOMDIR class), and no SimpleITK, GDCM,
    pydicom or napari import."""
    import json
    import subprocess
    import sys

    from napari_consign.io._reader import _MAX_SNIFF_DEPTH

    nifti = write_image(tmp_path / "scan.nii.gz", rng.integers(0, 9, (3, 4, 5)).astype(np.int16))
    series = write_dicom_series(tmp_path / "series", rng.integers(0, 9, (3, 4, 5)).astype(np.int16))
    nested = tmp_path / "cd" / "PT0" / "ST0" / "SE0"  # DICOM three levels down, extensionless
    write_dicom_series(nested, rng.integers(0, 9, (2, 4, 5)).astype(np.int16), extension="")
    too_deep = tmp_path / "deep" / "1" / "2" / "3" / "4"
    write_dicom_series(too_deep, rng.integers(0, 9, (2, 4, 5)).astype(np.int16))
    junk = tmp_path / "junk"  # a big non-DICOM tree: napari offers every folder to the reader
    for i in range(400):
        sub = junk / f"d{i % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:04d}").write_bytes(bytes(range(256)) * 2)  # names the patterns offer
    (tmp_path / "IM000123").write_bytes(bytes(range(256)) * 2)  # not DICOM, DICOM-like name
    paths = {
        "nifti": str(nifti),
        "dicom_file": str(series[0]),
        "dicom_folder": str(tmp_path / "series"),
        "nested_cd": str(tmp_path / "cd"),
        "too_deep": str(tmp_path / "deep"),
        "junk_folder": str(junk),
        "junk_file": str(tmp_path / "IM000123"),
        "dicomdir": str(pydicom_data() / "dicomdirtests" / "DICOMDIR"),
        "extensionless": str(pydicom_data() / "dicomdirtests" / "77654033" / "CT2" / "17106"),
    }
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out.pop("modules") == []  # no SimpleITK/GDCM (nor napari, Qt, torch, pydicom)
    accepted = {key: ok for key, (ok, _, _) in out.items()}
    assert accepted == {
        "nifti": True,
        "dicom_file": True,
        "dicom_folder": True,
        "nested_cd": True,
        "too_deep": _MAX_SNIFF_DEPTH >= 4,
        "junk_folder": False,
        "junk_file": False,
        "dicomdir": True,
        "extensionless": True,
    }
    assert out["dicom_folder"][2] == 1  # stops at the first DICOM image file
    assert out["junk_folder"][2] <= _MAX_FOLDER_SNIFF  # bounded: not 400 files
    for key, (_, opens, files) in out.items():
        assert opens <= 3 * max(files, 1), (key, opens, files)  # a few header reads per file


@pytest.mark.parametrize(
    "where",
    [
        "dicomdirtests",
        pytest.param("dicomdirtests/DICOMDIR", marks=pytest.mark.slow),
        pytest.param("dicomdirtests/77654033", marks=pytest.mark.slow),
        "dicomdirtests/77654033/CT2/17106",
    ],
)
def test_viewer_opens_dicomdir_parent_folders_and_extensionless_files(make_napari_viewer, where):
    from io_helpers import assert_files_land

    from napari_consign.io import read_volume
    from napari_consign.io.dicom import scan_folder

    viewer = make_napari_viewer()
    path = pydicom_data() / where
    start = _n_records()
    [layer] = viewer.open(str(path), plugin="napari-consign")
    assert not _records_since(start, "error")
    geometry = geometry_from_metadata(layer.metadata)
    vol = read_volume(path)
    assert geometry.series_uid == vol.geometry.series_uid
    np.testing.assert_array_equal(layer.data, vol.array)
    if path.is_file() and path.name != "DICOMDIR":
        files = [path]  # a file far from the rest of its series: a stack of its own
    else:
        files = scan_folder(path)[0][0].files  # the stack listed first is the one opened
    assert assert_files_land(vol, files) == len(files)
    if path.is_dir() or path.name == "DICOMDIR":
        assert any("DICOM series" in m for m in _records_since(start, "info"))


def test_save_layers_with_the_plugin(make_napari_viewer, tmp_path):
    import napari

    viewer = make_napari_viewer()
    src = pydicom_file("CT_small.dcm")
    [(data, kwargs, _)] = get_reader(src)(src)
    geometry = geometry_from_metadata(kwargs["metadata"])
    labels = viewer.add_labels((data > 0).astype(np.uint8), **layer_kwargs(geometry))
    out = tmp_path / "ct_mask.nii.gz"
    written = napari.save_layers(str(out), [labels], plugin="napari-consign")
    assert [str(p) for p in written] == [str(out)]
    assert_same_grid(sitk.ReadImage(str(out)), sitk.ReadImage(src))
