"""Shipped sample data and the napari sample-data commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_consign import _sample_data as sd


def test_files_resolve_inside_the_package():
    path = sd.sample_data_path(sd.DEMO_SCAN)
    assert path.is_file()
    assert "napari_consign" in path.parts
    with pytest.raises(FileNotFoundError, match=r"sample_data/README\.md"):
        sd.sample_data_path("missing.nii.gz")


def test_demo_scan_tuples():
    layers = sd.demo_scan()
    assert [t[2] for t in layers] == ["image", "labels"]
    (img, ikw, _), (mask, mkw, _) = layers
    assert img.shape == mask.shape == (80, 112, 96)
    assert img.dtype == np.int16 and mask.dtype == np.uint8
    ref = sitk.ReadImage(str(sd.sample_data_path(sd.DEMO_SCAN)))
    assert tuple(ikw["scale"]) == tuple(mkw["scale"]) == tuple(ref.GetSpacing()[::-1])
    assert tuple(ikw["translate"]) == tuple(ref.GetOrigin()[::-1]) == (-72.0, -94.0, -96.0)
    assert np.allclose(ikw.get("rotate", np.eye(3)), np.eye(3))  # identity direction (LPS)
    assert set(np.unique(mask)) == {0, 1}
    manifest = json.loads(sd.sample_data_path("sample_data_manifest.json").read_text())
    assert int(mask.sum()) == manifest["demo"]["lesion_voxels"]


def test_layer_geometry_matches_simpleitk():
    napari_layers = pytest.importorskip("napari.layers")
    img, kw, kind = sd.demo_scan()[0]
    layer = napari_layers.Layer.create(img, kw, kind)
    ref = sitk.ReadImage(str(sd.sample_data_path(sd.DEMO_SCAN)))
    for k, j, i in [(0, 0, 0), (79, 111, 95), (40, 10, 70)]:
        world = np.asarray(layer.data_to_world((k, j, i)))
        assert np.allclose(world, ref.TransformIndexToPhysicalPoint((i, j, k))[::-1])


def test_dicom_series_equals_nifti():
    ((dimg, dkw, kind),) = sd.demo_scan_dicom()
    img, kw, _ = sd.demo_scan()[0]
    assert kind == "image"
    assert np.array_equal(dimg, img)
    assert np.allclose(dkw["scale"], kw["scale"]) and np.allclose(dkw["translate"], kw["translate"])
    files = sorted(sd.sample_data_path(sd.DEMO_DICOM).glob("*.dcm"))
    r = sitk.ImageFileReader()
    r.SetFileName(str(files[3]))
    r.ReadImageInformation()
    for tag in ("0020|000e", "0020|0032", "0020|0037", "0020|0013", "0008|0060"):
        assert r.HasMetaDataKey(tag)
    assert r.GetMetaData("0020|0013").strip() == "4"
    assert r.GetMetaData("0008|0060").strip() == "MR"


def test_cases_2d():
    cal = sd.load_cases("calibration")
    test = sd.load_cases("test")
    thr = sd.load_cases("threshold")
    assert len(cal["images"]) == len(test["images"]) == 600 and len(thr["images"]) == 300
    assert cal["images"].dtype == np.float32 and cal["images"].shape[1:] == (112, 96)
    assert cal["masks"].dtype == np.uint8
    # the first 500 have lesions; the last 100 are healthy (the inner band's guarantee covers them)
    area = cal["masks"].reshape(600, -1).sum(1)
    assert (area[:500] > 0).all() and (area[500:] == 0).all()
    assert (test["split"] == "test").all()
    # difficulty varies: faint and strong lesions, small and large
    c = test["min_abs_contrast"]
    assert c.min() < 0.07 and c.max() > 0.3
    assert test["lesion_area"].min() < 30 and test["lesion_area"].max() > 300
    assert len(sd.load_cases()["images"]) == 1500
    with pytest.raises(ValueError, match="unknown split 'train'"):
        sd.load_cases("train")


def test_test_cases_command():
    (img, ikw, k1), (msk, _, k2) = sd.test_cases_2d()
    assert (k1, k2) == ("image", "labels")
    assert img.shape == msk.shape == (50, 112, 96)
    assert ikw["scale"] == (1.0, 2.0, 2.0)
