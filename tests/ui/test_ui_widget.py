"""The dock widget end to end in a shown viewer (pytest-qt under pytest-xvfb, CPU, N_s = 4).

The scan is the demo scan cropped to six slices, opened with the plugin's reader; the model is
the bundled UNet; calibrations come from bundles built in conftest for the bundled model (or,
in the calibrate-now tests, are made during the run).
"""

from __future__ import annotations

import numpy as np
import pytest
from ui_helpers import (
    boundary,
    consign_cases_npz,
    expected_contour,
    open_plugin_widget,
    open_scan,
    wait_done,
)

from napari_consign.analysis import METHOD_NAMES
from napari_consign.io import GEOMETRY_KEY
from napari_consign.ui.band_views import BandsView, PreviewView
from napari_consign.ui.layers import (
    ORANGE,
    RING_ALPHA,
    layer_key,
    same_layer,
)
from napari_consign.ui.main_widget import THUMBNAIL_DELAY_MS


def _world_corners(layer):
    shape = np.asarray(layer.data.shape[-3:])
    corners = [np.zeros(3), shape - 1, np.array([shape[0] - 1, 0, shape[2] - 1])]
    return np.array([layer.data_to_world(c) for c in corners])


def test_end_to_end(qtbot, viewer_widget, small_scan, notes, tmp_path):
    viewer, widget = viewer_widget
    image, truth = open_scan(viewer, small_scan)
    assert same_layer(widget.image_layer(), image)
    assert {"crc", "coat"} <= set(widget.selected_methods())
    widget.set_methods(["crc", "coat"])
    widget.set_truth(truth)
    viewer.dims.set_point(0, image.data_to_world((3, 0, 0))[0])

    first_data = {}

    def on_insert(event):
        first_data[event.value.name] = event.value.data

    viewer.layers.events.inserted.connect(on_insert)
    job = widget.run()
    assert job is not None and widget.busy
    assert not widget.run_button.isEnabled() and widget.cancel_button.isEnabled()
    wait_done(qtbot, widget)
    viewer.layers.events.inserted.disconnect(on_insert)
    assert not notes["error"], notes["error"]
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()

    # the slice on screen came first: each band layer was added with the preview of slice 3
    assert len(first_data) == 2
    for data in first_data.values():
        assert isinstance(data, PreviewView) and data.z == 3

    analysis = widget.analysis()
    assert set(analysis.bands) == {"crc", "coat"}
    for method in ("crc", "coat"):
        layer = widget.band_layer(method)
        assert layer.name == f"{image.name} · {method.upper()} · bands"
        assert isinstance(layer.data, BandsView)
        np.testing.assert_allclose(_world_corners(layer), _world_corners(image), atol=1e-9)
        assert layer.metadata["napari_consign"]["method"] == method
        assert layer.metadata["napari_consign"]["alpha"] == pytest.approx(0.1)
        assert layer.metadata["napari_consign"]["n_used"] == 60
        # the scan's geometry travels with the bands
        assert layer.metadata[GEOMETRY_KEY] == image.metadata[GEOMETRY_KEY]
        cmap = layer.colormap
        assert cmap.map(2)[2] > cmap.map(2)[0]  # inner: blue
        assert cmap.map(1)[0] > cmap.map(1)[2]  # ring: orange
        assert cmap.map(1)[3] == pytest.approx(1.0)  # a solid contour line in 2D
        assert layer.contour == 0  # napari's own contour would outline the inner band too

    # the slider moves every method's layer from its Bands, snapped per method; the volume is
    # the filled labels, the displayed slice the inner fill and the outer band's contour
    for alpha in (0.03, 0.25, 0.5):
        widget.set_alpha(alpha)
        for method in ("crc", "coat"):
            bands = analysis.bands[method]
            layer = widget.band_layer(method)
            np.testing.assert_array_equal(np.asarray(layer.data), bands.labels(alpha))
            for z in (0, 3, 5):
                np.testing.assert_array_equal(layer.data[z], expected_contour(bands, alpha, z))
            assert layer.metadata["napari_consign"]["alpha"] == pytest.approx(bands.snap(alpha))
    assert widget.alpha_label.text() == "α = 0.50"
    at_half = widget.band_layer("crc").thumbnail.copy()
    widget.alpha_slider.setValue(20)  # the user drags: same result through the signal
    np.testing.assert_array_equal(
        np.asarray(widget.band_layer("crc").data), analysis.bands["crc"].labels(0.2)
    )
    # the layer list's thumbnail follows once the slider rests (not on every tick of a drag)
    qtbot.wait(THUMBNAIL_DELAY_MS + 250)
    settled = widget.band_layer("crc").thumbnail.copy()
    widget.band_layer("crc").refresh()  # a full refresh: the thumbnail napari would draw now
    np.testing.assert_array_equal(settled, widget.band_layer("crc").thumbnail)
    assert not np.array_equal(settled, at_half)
    assert "misses at most 20%" in widget.guarantee_label.text()
    widget.set_alpha(0.01)  # 60 calibration units support alpha >= 1/61: the grid starts at 0.02
    assert "snapped to α = 0.02" in widget.guarantee_label.text()
    assert widget.band_layer("crc").metadata["napari_consign"]["alpha"] == pytest.approx(0.02)

    # numbers: volumes in mL, TPR and inner false positives against the truth layer
    widget.set_alpha(0.1)
    nums = widget.numbers()
    inner, outer = analysis.bands["crc"].masks(0.1)
    fg = np.asarray(truth.data) != 0
    assert nums["crc"]["outer_ml"] == pytest.approx(outer.sum() * 8 / 1000)
    assert nums["crc"]["tpr"] == pytest.approx((outer & fg).sum() / fg.sum())
    assert nums["crc"]["inner_fp_ml"] == pytest.approx((inner & ~fg).sum() * 8 / 1000)
    assert widget.table.rowCount() == 2 and widget.table.item(0, 4).text() != ""

    # export on the scan's own grid, never over the source
    path = widget.export_bands("crc", tmp_path / "crc_bands.nii.gz")
    from napari_consign.io import read_volume

    back = read_volume(path)
    np.testing.assert_array_equal(back.array, analysis.bands["crc"].labels(0.1))
    np.testing.assert_allclose(back.geometry.origin, read_volume(small_scan[0]).geometry.origin)
    from napari_consign.io import WriteRefusedError

    with pytest.raises(WriteRefusedError):
        widget.export_bands("crc", small_scan[0].with_name(small_scan[0].name))
    # File > Save Layers with the plugin's writer works on the lazy band layer too
    viewer.layers.selection.active = widget.band_layer("crc")
    viewer.layers.save(str(tmp_path / "saved.nii.gz"), selected=True, plugin="napari-consign")
    np.testing.assert_array_equal(read_volume(tmp_path / "saved.nii.gz").array, back.array)


@pytest.mark.slow
def test_compare_and_disagreement(qtbot, viewer_widget, small_scan, notes):
    from napari_consign.ui.compare import grid_of

    viewer, widget = viewer_widget
    image, truth = open_scan(viewer, small_scan)
    widget.set_methods(["crc", "coat"])
    widget.run()
    wait_done(qtbot, widget)
    grid = grid_of(viewer)
    before = [lyr.name for lyr in viewer.layers]
    visible = {lyr.name: lyr.visible for lyr in viewer.layers}
    assert widget.side_button.isEnabled()

    assert widget.set_compare(True, "coat", "crc")
    assert grid.enabled and grid.stride == 2 and tuple(grid.shape) == (1, 2)
    copy = widget.compare.image_copy
    assert copy.data is image.data  # shares the array
    names = [lyr.name for lyr in viewer.layers]
    assert names[:4] == [
        image.name,
        widget.band_layer("coat").name,
        copy.name,
        widget.band_layer("crc").name,
    ]
    assert not truth.visible
    np.testing.assert_allclose(_world_corners(copy), _world_corners(image))
    image.contrast_limits = (10, 500)
    assert tuple(copy.contrast_limits) == (10, 500)  # linked
    assert widget.side_button.isChecked()

    widget.side_button.setChecked(False)  # the user switches it off
    assert not grid.enabled and widget.compare.image_copy is None
    assert [lyr.name for lyr in viewer.layers] == before
    assert {lyr.name: lyr.visible for lyr in viewer.layers} == visible

    layer = widget.set_disagreement(True, "crc", "coat")
    assert layer.name.endswith("CRC vs COAT · disagreement")
    a, b = widget.analysis().bands["crc"], widget.analysis().bands["coat"]
    arr = np.asarray(layer.data)
    oa, ob = a.masks(0.1)[1], b.masks(0.1)[1]
    np.testing.assert_array_equal(arr == 3, oa & ob)
    widget.set_alpha(0.3)  # follows the slider
    oa, ob = a.masks(0.3)[1], b.masks(0.3)[1]
    np.testing.assert_array_equal(np.asarray(layer.data) == 1, oa & ~ob)
    widget.set_disagreement(False)
    assert [lyr.name for lyr in viewer.layers] == before

    assert not widget.set_compare(True, "crc", "crc")
    assert notes["error"][-1].startswith("Choose two different methods")


def test_cancel_leaves_nothing(qtbot, viewer_widget, small_scan, notes):
    viewer, widget = viewer_widget
    open_scan(viewer, small_scan)
    n_layers = len(viewer.layers)
    widget.set_methods(["crc"])
    assert widget.run() is not None
    widget.cancel()
    wait_done(qtbot, widget)
    assert len(viewer.layers) == n_layers
    assert widget.analysis() is None
    assert widget.status.text() == "cancelled"
    assert any("cancelled" in m for m in notes["info"])
    assert widget.run_button.isEnabled()


@pytest.mark.slow
def test_cancel_after_preview_rolls_back(qtbot, viewer_widget, small_scan, notes, monkeypatch):
    """Inline (NAPARI_CONSIGN_NOTHREADS=1): cancel once the preview layer is shown."""
    monkeypatch.setenv("NAPARI_CONSIGN_NOTHREADS", "1")
    viewer, widget = viewer_widget
    open_scan(viewer, small_scan)
    n_layers = len(viewer.layers)
    widget.set_methods(["crc"])
    seen = []

    def on_insert(event):
        seen.append(event.value.name)
        widget.cancel()

    viewer.layers.events.inserted.connect(on_insert)
    widget.run()  # returns when done (inline)
    viewer.layers.events.inserted.disconnect(on_insert)
    assert len(seen) == 1 and seen[0].endswith("CRC · bands")
    assert len(viewer.layers) == n_layers and not widget.busy
    assert widget.analysis() is None


@pytest.mark.slow
def test_layer_removed_mid_run(qtbot, viewer_widget, small_scan, notes):
    viewer, widget = viewer_widget
    image, _ = open_scan(viewer, small_scan)
    widget.set_methods(["crc", "coat"])
    widget.run()
    qtbot.waitUntil(lambda: widget.band_layer("crc") is not None or not widget.busy, timeout=60_000)
    viewer.layers.remove(image)
    wait_done(qtbot, widget)
    assert [lyr.name for lyr in viewer.layers] == ["truth"]
    assert any("was removed while it was analysed" in m for m in notes["warning"])
    assert not notes["error"]


def test_bad_inputs(
    qtbot, viewer_widget, notes, small_scan, foreign_bundle, tmp_path, synthetic_methods,
    builtin_model_id,
):  # fmt: skip
    viewer, widget = viewer_widget
    assert widget.run() is None
    assert "Open a scan first" in notes["error"][-1]

    viewer.add_image(np.zeros((2, 3, 8, 8), np.float32), name="four")
    assert widget.run(viewer.layers["four"]) is None
    assert "is 4D" in notes["error"][-1]

    viewer.add_image(np.zeros((8, 8, 3), np.uint8), name="colour", rgb=True)
    assert widget.run(viewer.layers["colour"]) is None
    assert "RGB" in notes["error"][-1]
    assert len(viewer.layers) == 2

    image, _ = open_scan(viewer, small_scan)
    widget.set_calibration("files", files=[foreign_bundle])
    assert widget.selected_methods() == ["crc"]
    n_layers = len(viewer.layers)
    widget.run(image)
    wait_done(qtbot, widget)
    assert "calibrated for model" in notes["error"][-1]
    assert "calibrate this model instead" in notes["error"][-1]
    assert len(viewer.layers) == n_layers

    widget.set_calibration("bundled")
    widget.set_methods([])
    assert widget.run(image) is None
    assert "Tick at least one method" in notes["error"][-1]

    from napari_consign.calibration import save_bundle  # a bundle made at N_s = 10

    made_at_10 = save_bundle(
        tmp_path / "crc10.npz", synthetic_methods["crc"], builtin_model_id,
        extra={"n_samples": 10, "mode": "mc_dropout"},
    )  # fmt: skip
    widget.set_calibration("files", files=[made_at_10])
    assert widget.ns_spin.value() == 10  # the widget takes the bundle's N_s
    widget.ns_spin.setValue(4)  # the user asks for another: refused, nothing runs
    assert widget.run(image) is None
    assert "made with 10 Monte-Carlo samples" in notes["error"][-1]
    assert len(viewer.layers) == n_layers


def test_method_availability(viewer_widget, bundle_dir):
    _, widget = viewer_widget
    why = widget.available_methods()
    assert why["crc"] == "" and why["coat"] == ""
    assert why["at"].startswith("no shipped bundle")
    assert not widget.method_boxes["at"].isEnabled()
    widget.set_calibration("calibrate", source=bundle_dir)
    assert all(widget.method_boxes[m].isEnabled() for m in METHOD_NAMES)


@pytest.mark.slow
def test_consign_given_and_plausible(qtbot, viewer_widget, small_scan, fake_consign, notes):
    viewer, widget = viewer_widget
    image, _ = open_scan(viewer, small_scan)
    widget.set_calibration("given", methods={"consign": fake_consign})
    widget.set_methods(["consign"])
    widget.run()
    wait_done(qtbot, widget)
    assert not notes["error"], notes["error"]
    bands = widget.analysis().bands["consign"]
    widget.set_alpha(0.12)  # CONSIGN's grid: 0.05 steps
    layer = widget.band_layer("consign")
    assert layer.metadata["napari_consign"]["alpha"] == pytest.approx(0.1)
    assert layer.metadata["napari_consign"]["envelope"] is True
    np.testing.assert_array_equal(np.asarray(layer.data), bands.labels(0.1))
    assert "visual summary" in widget.guarantee_label.text()
    assert widget.plausible_button.isEnabled()
    stack = widget.add_plausible_segmentations("consign", n=3)
    assert stack.data.shape == (3, *image.data.shape)
    np.testing.assert_allclose(
        stack.data_to_world((1, 2, 3, 4))[1:], image.data_to_world((2, 3, 4)), atol=1e-9
    )


def test_2d_image(qtbot, viewer_widget, small_scan, notes):
    from napari_consign.io import read_volume

    viewer, widget = viewer_widget
    vol = read_volume(small_scan[0])
    layer = viewer.add_image(vol.array[2], name="slice", scale=(2.0, 2.0), translate=(5, 7))
    widget.set_methods(["crc"])
    widget.run(layer)
    wait_done(qtbot, widget)
    assert not notes["error"], notes["error"]
    bands = widget.band_layer("crc")
    assert bands.data.shape == layer.data.shape
    np.testing.assert_allclose(bands.data_to_world((3, 4)), layer.data_to_world((3, 4)))
    widget.set_alpha(0.2)
    crc = widget.analysis().bands["crc"]
    np.testing.assert_array_equal(np.asarray(bands.data), crc.labels(0.2)[0])
    np.testing.assert_array_equal(bands.data[:, :], expected_contour(crc, 0.2, 0))


@pytest.mark.slow
def test_ring_contour_fill_and_3d(qtbot, viewer_widget, small_scan, notes):
    viewer, widget = viewer_widget
    image, _ = open_scan(viewer, small_scan)
    widget.set_methods(["crc"])
    widget.run()
    wait_done(qtbot, widget)
    layer = widget.band_layer("crc")
    bands = widget.analysis().bands["crc"]
    widget.set_alpha(0.05)
    inner, outer = bands.masks(0.05)
    assert widget.ring_mode == "contour" and not widget.ring_fill_box.isChecked()
    edges = np.stack([boundary(o) for o in outer])
    z = int(np.argmax((outer & ~inner & ~edges).sum(axis=(1, 2))))  # the widest ring
    viewer.dims.set_point(0, image.data_to_world((z, 0, 0))[0])
    plane = layer.data[z]
    np.testing.assert_array_equal(plane == 1, boundary(outer[z]))  # exactly the outer boundary
    np.testing.assert_array_equal(plane == 2, inner[z] & ~boundary(outer[z]))
    ring_inside = outer[z] & ~inner[z] & ~boundary(outer[z])
    assert ring_inside.any() and not plane[ring_inside].any()  # the ring is not filled
    # napari draws what the view gives for the displayed plane (the layer's own slice)
    shown = np.asarray(layer._slice.image.raw)
    np.testing.assert_array_equal(shown, plane)
    # another orientation: the contour is computed in the plane on screen
    np.testing.assert_array_equal(layer.data[:, 40, :] == 1, boundary(outer[:, 40, :]))

    widget.ring_fill_box.setChecked(True)  # the user asks for the filled ring
    assert widget.ring_mode == "fill"
    np.testing.assert_array_equal(layer.data[z], bands.labels(0.05)[z])
    assert layer.colormap.map(1)[3] == pytest.approx(RING_ALPHA)  # translucent fill
    widget.set_ring_mode("contour")
    np.testing.assert_array_equal(layer.data[z], expected_contour(bands, 0.05, z))
    np.testing.assert_allclose(layer.colormap.map(1), ORANGE)

    viewer.dims.ndisplay = 3  # 3D: the code volume stands in for the labels layer
    volume = widget.volumes.layer((layer_key(image), "crc"))
    assert volume.visible and not layer.visible
    widget.alpha_slider.setValue(30)  # the user drags in 3D: a colormap per tick
    codes = widget.volumes.codes((layer_key(image), "crc"))
    np.testing.assert_array_equal(codes.labels(widget.volumes.step_of(0.3)), bands.labels(0.3))
    viewer.dims.ndisplay = 2
    np.testing.assert_allclose(layer.colormap.map(1), ORANGE)
    np.testing.assert_array_equal(layer.data[z], expected_contour(bands, 0.3, z))
    assert not notes["error"], notes["error"]


@pytest.mark.slow
def test_calibrate_now_and_model_file(qtbot, viewer_widget, small_scan, notes, tmp_path):
    from napari_consign._sample_data import sample_data_path

    viewer, widget = viewer_widget
    open_scan(viewer, small_scan)
    rng = np.random.default_rng(0)
    cases = np.load(sample_data_path("cases2d.npz"))
    pick = rng.choice(np.flatnonzero(cases["split"] == 1), 24, replace=False)
    np.savez(
        tmp_path / "cases.npz",
        images=cases["images"][pick] * cases["scale"][pick, None, None],
        masks=cases["masks"][pick],
    )
    widget.set_model_files([sample_data_path("unet_lesions.pt")])  # a state-dict file
    widget.set_calibration("calibrate", source=tmp_path / "cases.npz", save_dir=tmp_path / "b")
    widget.max_cases_spin.setValue(16)
    widget.set_methods(["crc"])
    widget.run()
    wait_done(qtbot, widget)
    assert not notes["error"], notes["error"]
    info = widget.analysis().bands["crc"].info  # the calibration split ends with healthy cases
    assert info["n_used"] + info["n_empty"] == 16
    assert (tmp_path / "b" / "crc.npz").is_file()
    assert sum("calibrated on" in m for m in notes["info"]) == 1
    widget.run()  # the calibration is kept for this model and source
    wait_done(qtbot, widget)
    assert sum("calibrated on" in m for m in notes["info"]) == 1


def test_widget_made_after_the_scan(make_napari_viewer, shipped_bundles, small_scan):
    viewer = make_napari_viewer(show=True)
    image, _ = open_scan(viewer, small_scan)
    widget = open_plugin_widget(viewer)
    assert same_layer(widget.image_layer(), image)
    assert widget.truth_combo.count() == 2  # (none) + the truth labels
    image.name = "renamed"
    assert same_layer(widget.image_layer(), image)


@pytest.mark.slow
def test_calibrate_consign_now_bands_and_plausible(
    qtbot, viewer_widget, small_scan, notes, tmp_path
):
    """CONSIGN calibrated during the run (N_s = 4, ten synthetic units), then its bands and a
    stack of plausible segmentations drawn from its set."""
    from napari_consign.conformal.bands import feasible_alphas
    from napari_consign.conformal.consign import CONSIGN

    viewer, widget = viewer_widget
    image, _ = open_scan(viewer, small_scan)
    source = consign_cases_npz(tmp_path / "cases.npz", n=10)
    widget.set_calibration("calibrate", source=source)
    widget.max_cases_spin.setValue(10)
    widget.set_methods(["consign"])
    assert widget.selected_methods() == ["consign"]
    assert widget.run() is not None
    wait_done(qtbot, widget, timeout=300_000)
    assert not notes["error"], notes["error"]
    assert sum("calibrated on" in m for m in notes["info"]) == 1

    analysis = widget.analysis()
    method = analysis.methods["consign"]
    assert isinstance(method, CONSIGN) and method.k == 3  # K = N_s - 1
    bands = analysis.bands["consign"]
    n_used = bands.info["n_used"]
    assert n_used >= 5
    lambdas = bands.info["lambda_hat"]
    assert lambdas and all(np.isfinite(v) for v in lambdas.values())  # lambda-hat feasible
    # the grid is the calibrated levels: feasible for n_used units, lambda-hat found for each
    assert set(np.round(bands.alphas, 2)) == set(np.round(list(lambdas), 2))
    assert set(np.round(bands.alphas, 2)) <= set(np.round(feasible_alphas(n_used), 2))

    layer = widget.band_layer("consign")
    assert layer.name == f"{image.name} · CONSIGN · bands"
    assert layer.metadata["napari_consign"]["envelope"] is True
    for alpha in (bands.alphas[0], 0.3, 0.5):
        widget.set_alpha(alpha)
        snapped = bands.snap(alpha)
        assert layer.metadata["napari_consign"]["alpha"] == pytest.approx(snapped)
        np.testing.assert_array_equal(np.asarray(layer.data), bands.labels(snapped))
        np.testing.assert_array_equal(layer.data[2], expected_contour(bands, snapped, 2))
    assert (bands.labels(0.3) == 2).any()  # the scan's lesions are found: an inner band
    assert "visual summary" in widget.guarantee_label.text()

    widget.set_alpha(0.3)
    assert widget.plausible_button.isEnabled()
    n_layers = len(viewer.layers)
    stack = widget.add_plausible_segmentations("consign", n=3)
    assert len(viewer.layers) == n_layers + 1
    assert stack.name == f"{image.name} · CONSIGN · plausible segmentations"
    assert stack.data.shape == (3, *image.data.shape) and stack.data.dtype == np.uint8
    assert stack.metadata["napari_consign"]["alpha"] == pytest.approx(bands.snap(0.3))
    np.testing.assert_allclose(
        stack.data_to_world((2, 1, 2, 3))[1:], image.data_to_world((1, 2, 3)), atol=1e-9
    )
    data = np.asarray(stack.data)
    inner, outer = bands.masks(0.3)
    assert data.any()
    # every draw lies between the envelope's inner and outer band (a handful of voxels may
    # differ where the closed-form envelope and a draw round a zero margin differently)
    for d in data.astype(bool):
        assert (d & ~outer).sum() <= 0.001 * d.size
        assert (inner & ~d).sum() <= 0.001 * d.size
    # flip through it: the first dims slider is the sample index
    viewer.dims.set_point(0, 2)
    assert viewer.dims.point[0] == pytest.approx(2)
