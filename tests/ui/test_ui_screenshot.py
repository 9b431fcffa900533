"""The bands are visible on the canvas: pixel checks on a shown viewer (pytest-xvfb)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from ui_helpers import open_scan, wait_done

from napari_consign.ui.layers import BLUE


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


def test_bands_visible_on_canvas(qtbot, make_napari_viewer, shipped_bundles, small_scan):
    from napari_consign.ui.main_widget import ConsignWidget

    viewer = make_napari_viewer(show=True)
    widget = ConsignWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.ns_spin.setValue(4)
    widget.device_combo.setCurrentText("cpu")
    _, truth = open_scan(viewer, small_scan)
    truth.visible = False
    widget.set_methods(["crc"])
    widget.set_alpha(0.05)
    widget.run()
    wait_done(qtbot, widget)
    layer = widget.band_layer("crc")
    layer.opacity = 1.0
    labels = widget.analysis().bands["crc"].labels(0.05)
    flat = labels.reshape(len(labels), -1)
    z = int(np.argmax(np.minimum((flat == 2).sum(axis=1), (flat == 1).sum(axis=1))))
    assert (labels[z] == 2).any() and (labels[z] == 1).any()

    inner = _centre_pixel(viewer, layer, z, _deepest(labels[z] == 2))
    ring = _centre_pixel(viewer, layer, z, _deepest(labels[z] == 1))
    np.testing.assert_allclose(inner, np.array(BLUE[:3]) * 255, atol=25)
    # the ring is translucent orange over the grey scan: orange hue, not grey, not blue
    assert ring[0] > ring[2] + 60 and ring[1] > ring[2] + 30

    layer.visible = False  # the same spot shows the scan, not the band colour
    plain = _centre_pixel(viewer, layer, z, _deepest(labels[z] == 2))
    assert np.abs(plain - inner).max() > 60
    assert abs(plain[0] - plain[2]) < 10  # grey scan

    layer.visible = True  # whole-canvas check: both band colours present
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].reshape(-1, 3).astype(int)
    assert (np.abs(shot - np.array(BLUE[:3]) * 255).max(axis=1) < 25).sum() > 20
    orange = (shot[:, 0] > shot[:, 2] + 60) & (shot[:, 1] > shot[:, 2] + 30)
    assert orange.sum() > 20
