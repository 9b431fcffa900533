"""3D band rendering: the code volume renders exactly the labels of Bands at every slider step,
and a slider tick in 3D uploads no volume texture."""

from __future__ import annotations

import numpy as np
import pytest

from napari_consign.conformal.bands import Bands
from napari_consign.ui.band_volume import MAX_CODES, band_codes

SLIDER = np.round(np.arange(1, 51) / 100, 2)


def _threshold_bands(seed: int, shape=(12, 40, 36), levels=None) -> Bands:
    rng = np.random.default_rng(seed)
    score = rng.random(shape) ** 3  # many low scores, a few high: bands cover part of it
    alphas = np.asarray(levels if levels is not None else np.arange(1, 51) / 100.0)
    tau_outer = np.quantile(score, 0.9 - alphas)  # outer shrinks as alpha grows
    tau_inner = np.quantile(score, 0.999 - alphas)  # raw inner grows as alpha grows
    return Bands.from_thresholds(score, alphas, tau_outer, tau_inner, method="crc")


def _mask_stack_bands(seed: int, shape=(6, 30, 28)) -> Bands:
    rng = np.random.default_rng(seed)
    alphas = np.array([0.05, 0.1, 0.15, 0.2, 0.3])
    outer = rng.random((len(alphas), *shape)) < 0.3  # not nested: CONSIGN's case
    inner = rng.random((len(alphas), *shape)) < 0.2
    return Bands.from_mask_stack(alphas, inner, outer, method="consign")


@pytest.mark.parametrize(
    "bands",
    [
        _threshold_bands(0),
        _threshold_bands(1, levels=[0.02, 0.05, 0.1, 0.2, 0.3, 0.5]),  # coarse grid: snapping
        _mask_stack_bands(2),
    ],
    ids=["threshold", "threshold-coarse-grid", "mask-stack"],
)
def test_codes_render_the_labels_of_bands_at_every_step(bands):
    codes = band_codes(bands, SLIDER)
    assert codes is not None and len(codes.table) <= MAX_CODES
    assert not codes.table[0].any()  # code 0: never in a band
    for step, alpha in enumerate(SLIDER):
        np.testing.assert_array_equal(codes.labels(step), bands.labels(alpha), err_msg=str(alpha))
    box = np.zeros(bands.shape, bool)
    box[tuple(slice(o, o + n) for o, n in zip(codes.offset, codes.codes.shape, strict=True))] = 1
    ever = np.any([bands.labels(a) > 0 for a in SLIDER], axis=0)
    assert not (ever & ~box).any()  # the crop keeps every band voxel


def test_threshold_bands_give_few_codes():
    """One score per voxel drives both bands: about two codes per grid level at most."""
    bands = _threshold_bands(3, shape=(20, 64, 64))
    codes = band_codes(bands, SLIDER)
    assert len(codes.table) <= 2 * len(bands.alphas) + 1


def _normalised(layer, values):
    lo, hi = layer.contrast_limits
    return (np.asarray(values, float) - lo) / (hi - lo)


@pytest.mark.slow
def test_3d_tick_swaps_colormaps_and_uploads_no_volume(
    qtbot, viewer_widget, small_scan, monkeypatch
):
    """In 3D a tick changes what the shader reads (a colormap), never a volume texture; what is
    rendered at each alpha is exactly the labels of Bands (grid snapping included); back in 2D
    the labels layers show the current alpha."""
    import vispy.gloo.texture as texture
    from ui_helpers import open_scan, wait_done

    from napari_consign.ui.band_volume import INNER_ALPHA_3D, RING_ALPHA_3D
    from napari_consign.ui.layers import layer_key, method_colours

    viewer, widget = viewer_widget
    image, truth = open_scan(viewer, small_scan)
    truth.visible = False
    widget.set_methods(["crc", "coat"])
    widget.run()
    wait_done(qtbot, widget)
    # the code volumes were computed in a worker after the run: going 3D only uploads them
    qtbot.waitUntil(lambda: not widget._prep_job.running, timeout=60_000)
    import napari_consign.ui.band_volume as band_volume

    def not_again(*_args):
        raise AssertionError("codes computed on the GUI thread at the switch to 3D")

    monkeypatch.setattr(band_volume, "band_codes", not_again)
    viewer.dims.ndisplay = 3
    qtbot.wait(200)
    analysis = widget.analysis()
    key = layer_key(image)
    volumes = {m: widget.volumes.layer((key, m)) for m in ("crc", "coat")}
    for method, volume in volumes.items():
        assert volume is not None and volume.visible
        assert not widget.band_layer(method).visible  # the labels layer hides behind it
        assert volume.name.endswith(f"{method.upper()} · bands (3D)")
        np.testing.assert_allclose(  # the same place in the world as the scan
            volume.data_to_world(np.zeros(3)),
            image.data_to_world(np.array(widget.volumes.codes((key, method)).offset, float)),
        )

    uploads = []
    original = texture.Texture3D.set_data
    monkeypatch.setattr(
        texture.Texture3D,
        "set_data",
        lambda self, *a, **k: (uploads.append(self.shape), original(self, *a, **k))[1],
    )
    for alpha in (0.03, 0.25, 0.5, 0.1):
        widget.alpha_slider.setValue(round(alpha * 100))  # as the user drags
        viewer.screenshot(canvas_only=True, flash=False)  # the frame is drawn
        step = widget.volumes.step_of(alpha)
        for method, volume in volumes.items():
            codes = widget.volumes.codes((key, method))
            bands = analysis.bands[method]
            np.testing.assert_array_equal(codes.labels(step), bands.labels(alpha))
            inner, ring = method_colours(method)
            k = np.arange(len(codes.table))
            shown = volume.colormap.map(_normalised(volume, k))
            expected = np.zeros((len(k), 4))
            expected[codes.table[:, step] == 1] = (*ring[:3], RING_ALPHA_3D)
            expected[codes.table[:, step] == 2] = (*inner[:3], INNER_ALPHA_3D)
            np.testing.assert_allclose(shown, expected, atol=1e-6)
    assert uploads == [], f"a tick re-uploaded volume textures: {uploads}"

    viewer.dims.ndisplay = 2
    for method, volume in volumes.items():
        labels = widget.band_layer(method)
        assert labels.visible and not volume.visible
        np.testing.assert_array_equal(np.asarray(labels.data), analysis.bands[method].labels(0.1))


@pytest.mark.slow
def test_a_rerun_in_3d_keeps_the_bands_visible(qtbot, viewer_widget, small_scan):
    from ui_helpers import open_scan, wait_done

    from napari_consign.ui.layers import layer_key

    viewer, widget = viewer_widget
    image, _ = open_scan(viewer, small_scan)
    widget.set_methods(["crc"])
    widget.run()
    wait_done(qtbot, widget)
    viewer.dims.ndisplay = 3
    first = widget.volumes.layer((layer_key(image), "crc"))
    assert first.visible
    widget.run()  # again, in 3D: new bands, a new code volume
    wait_done(qtbot, widget)
    volume = widget.volumes.layer((layer_key(image), "crc"))
    assert volume is not None and volume.visible and volume is not first
    assert not widget.band_layer("crc").visible
