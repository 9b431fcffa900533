"""The npe2 hooks in a real napari viewer: reader tuples, notifications, writer, manifest wiring.

The ``viewer.open(..., plugin="napari-consign")`` and ``save_layers(..., plugin=...)`` tests run
as soon as napari.yaml declares the reader/writer; until then they skip with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest
from io_helpers import (
    assert_layer_matches_sitk,
    assert_same_grid,
    pydicom_data,
    pydicom_file,
    rotation,
    write_dicom_series,
    write_image,
)

from napari_consign.io import GEOMETRY_KEY, WriteRefusedError, geometry_from_metadata, layer_kwargs
from napari_consign.io._reader import get_reader
from napari_consign.io._writer import write_labels

sitk = pytest.importorskip("SimpleITK")


def _manifest_declares(kind: str) -> bool:
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager.instance()
    try:
        manifest = pm.get_manifest("napari-consign")
    except KeyError:
        return False
    return bool(getattr(manifest.contributions, kind, None))


def _require_manifest(kind: str) -> None:
    if not _manifest_declares(kind):
        pytest.skip(f"napari.yaml declares no {kind} for napari-consign yet (the lead adds them)")


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


@pytest.mark.parametrize("which", ["oblique_nifti", "dicom_folder", "dicom_file"])
def test_viewer_open_with_the_plugin(make_napari_viewer, tmp_path, rng, which):
    viewer = make_napari_viewer()
    _require_manifest("readers")
    if which == "oblique_nifti":
        path = str(_oblique_nifti(tmp_path, rng))
        ref = sitk.ReadImage(path)
    elif which == "dicom_folder":
        folder = pydicom_data() / "dicomdirtests" / "77654033" / "CT2"
        path = str(folder)
        r = sitk.ImageSeriesReader()
        ref = sitk.ReadImage(r.GetGDCMSeriesFileNames(path))
    else:
        path = pydicom_file("CT_small.dcm")
        ref = sitk.ReadImage(path)
    layers = viewer.open(path, plugin="napari-consign")
    assert len(layers) == 1
    _check_layer(layers[0], ref)


def test_save_layers_with_the_plugin(make_napari_viewer, tmp_path):
    import napari

    viewer = make_napari_viewer()
    _require_manifest("writers")
    src = pydicom_file("CT_small.dcm")
    [(data, kwargs, _)] = get_reader(src)(src)
    geometry = geometry_from_metadata(kwargs["metadata"])
    labels = viewer.add_labels((data > 0).astype(np.uint8), **layer_kwargs(geometry))
    out = tmp_path / "ct_mask.nii.gz"
    written = napari.save_layers(str(out), [labels], plugin="napari-consign")
    assert [str(p) for p in written] == [str(out)]
    assert_same_grid(sitk.ReadImage(str(out)), sitk.ReadImage(src))
