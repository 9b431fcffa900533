"""The bands are visible on the canvas: pixel checks on a shown viewer (pytest-xvfb).

In 2D the inner band is filled blue and the outer band drawn as its orange boundary contour,
so the inside of the ring shows the scan; with the ring filled, it shows translucent orange.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from ui_helpers import boundary, expected_contour, open_plugin_widget, open_scan, wait_done

from napari_consign.ui.layers import BLUE, ORANGE


def _deepest(mask2d: np.ndarray) -> tuple[int, int]:
    """The pixel of ``mask2d`` farthest from its border."""
    dist = ndimage.distance_transform_edt(np.pad(mask2d, 1))[1:-1, 1:-1]
    return tuple(int(v) for v in np.unravel_index(np.argmax(dist), dist.shape))


def _centre_pixel(viewer, layer, z, yx, zoom=40.0) -> np.ndarray:
    world = layer.data_to_world((z, *yx))
    viewer.dims.set_point(0, float(world[0]))
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = tuple(float(v) for v in world[1:])
    camera.zoom = zoom
    shot = viewer.screenshot(canvas_only=True, flash=False)
    h, w = shot.shape[:2]
    return shot[h // 2 - 2 : h // 2 + 3, w // 2 - 2 : w // 2 + 3, :3].reshape(-1, 3).mean(axis=0)


def _is_orange(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, dtype=float)
    return (rgb[..., 0] > rgb[..., 2] + 60) & (rgb[..., 1] > rgb[..., 2] + 30)


def _contour_pixel(contour: np.ndarray) -> tuple[int, int]:
    """A contour pixel whose 3 x 3 neighbourhood is mostly contour (a steady screen colour
    around the canvas centre, whatever the sub-pixel framing)."""
    ring = (contour == 1).astype(float)
    density = ndimage.uniform_filter(ring, size=3, mode="constant") * ring
    return tuple(int(v) for v in np.unravel_index(np.argmax(density), density.shape))


@pytest.mark.slow
def test_bands_visible_on_canvas(qtbot, make_napari_viewer, shipped_bundles, small_scan):
    viewer = make_napari_viewer(show=True)
    widget = open_plugin_widget(viewer)
    widget.ns_spin.setValue(4)
    widget.device_combo.setCurrentText("cpu")
    _, truth = open_scan(viewer, small_scan)
    truth.visible = False
    widget.set_methods(["crc"])
    widget.set_alpha(0.05)
    widget.run()
    wait_done(qtbot, widget)
    assert widget.ring_mode == "contour"  # the default
    layer = widget.band_layer("crc")
    layer.opacity = 1.0
    bands = widget.analysis().bands["crc"]
    inner, outer = bands.masks(0.05)
    ring_inside = outer & ~inner & ~np.stack([boundary(o) for o in outer])
    counts = np.minimum(inner.sum(axis=(1, 2)), ring_inside.sum(axis=(1, 2)))
    z = int(np.argmax(counts))
    assert counts[z] > 0
    contour = expected_contour(bands, 0.05, z)
    np.testing.assert_array_equal(layer.data[z], contour)  # what napari draws for slice z

    inner_px = _centre_pixel(viewer, layer, z, _deepest(contour == 2))
    edge_px = _centre_pixel(viewer, layer, z, _contour_pixel(contour))
    inside_yx = _deepest(ring_inside[z])
    inside_px = _centre_pixel(viewer, layer, z, inside_yx)
    np.testing.assert_allclose(inner_px, np.array(BLUE[:3]) * 255, atol=25)  # blue fill
    np.testing.assert_allclose(edge_px, np.array(ORANGE[:3]) * 255, atol=25)  # orange contour
    assert not _is_orange(inside_px)  # inside the ring: the grey scan, no orange fill
    assert abs(inside_px[0] - inside_px[2]) < 10

    widget.ring_fill_box.setChecked(True)  # the toggle: the ring filled, translucent orange
    filled_px = _centre_pixel(viewer, layer, z, inside_yx)
    assert _is_orange(filled_px)
    np.testing.assert_array_equal(layer.data[z], bands.labels(0.05)[z])
    widget.set_ring_mode("contour")
    assert not _is_orange(_centre_pixel(viewer, layer, z, inside_yx))

    layer.visible = False  # the same spot shows the scan, not the band colour
    plain = _centre_pixel(viewer, layer, z, _deepest(contour == 2))
    assert np.abs(plain - inner_px).max() > 60
    assert abs(plain[0] - plain[2]) < 10  # grey scan

    layer.visible = True  # whole-canvas check: both band colours present
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].reshape(-1, 3).astype(int)
    assert (np.abs(shot - np.array(BLUE[:3]) * 255).max(axis=1) < 25).sum() > 20
    assert (np.abs(shot - np.array(ORANGE[:3]) * 255).max(axis=1) < 25).sum() > 20
