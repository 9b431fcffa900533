"""Radiological display from the camera orientation (``napari_consign.radiological``).

World coordinates are LPS in (z, y, x) order: z to superior, y to posterior, x to patient left.
Expected on screen: axial anterior up and patient left on the right; coronal superior up and
patient left on the right; sagittal superior up and posterior on the right. Checked on canvas
screenshots of an asymmetric phantom with a shown viewer (hidden viewers give blank shots).
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_consign.radiological import keep_radiological, radiological_orientation

AXIAL, CORONAL, SAGITTAL = (0, 1, 2), (1, 0, 2), (2, 0, 1)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (AXIAL, ("away", "down", "right")),  # seen from the feet
        (CORONAL, ("away", "up", "right")),  # seen from the front
        (SAGITTAL, ("towards", "up", "right")),  # seen from the patient's left
        ((0, 2, 1), ("towards", "down", "right")),
        ((1, 0), ("towards", "down", "right")),  # 2D data: no superior axis
        ((0, 2, 1, 3), ("away", "up", "right")),  # (t, z, y, x): coronal, z is world axis 1
    ],
)
def test_radiological_orientation(order, expected):
    assert radiological_orientation(order) == expected


def test_3d_views_are_not_mirrored():
    """napari is right-handed iff an even number of entries differ from its default
    ('towards', 'down', 'right'); the displayed LPS triple (z, y, x) is left-handed, and any
    permutation changes handedness with its parity: the two must agree."""
    from itertools import permutations

    default = ("towards", "down", "right")
    for order in permutations(range(3)):
        orientation = radiological_orientation(order)
        napari_left = sum(a != b for a, b in zip(orientation, default, strict=True)) % 2 == 1
        inversions = sum(order[i] > order[j] for i in range(3) for j in range(i + 1, 3))
        physical_left = inversions % 2 == 0
        assert napari_left == physical_left, order


def test_keep_radiological_follows_dims_and_disconnects():
    from napari.components import ViewerModel

    viewer = ViewerModel()
    viewer.add_image(np.zeros((4, 5, 6), np.float32))
    stop = keep_radiological(viewer)
    assert viewer.scene.camera.orientation2d == ("down", "right")
    viewer.dims.order = CORONAL
    assert viewer.scene.camera.orientation2d == ("up", "right")
    viewer.dims.ndisplay = 3
    assert tuple(map(str, viewer.scene.camera.orientation)) == ("away", "up", "right")
    viewer.dims.ndisplay = 2
    viewer.dims.order = SAGITTAL
    assert tuple(map(str, viewer.scene.camera.orientation)) == ("towards", "up", "right")
    stop()
    viewer.dims.order = AXIAL
    assert viewer.scene.camera.orientation2d == ("up", "right")  # no longer followed


# ---------------------------------------------------------------------------------------------
# pixels on screen
# ---------------------------------------------------------------------------------------------
SHAPE = (20, 24, 28)  # z, y, x
MARKER = (slice(14, 18), slice(16, 21), slice(19, 25))  # superior, posterior, patient left
CENTRE = [(s.start + s.stop - 1) / 2 for s in MARKER]


def _phantom() -> np.ndarray:
    vol = np.full(SHAPE, 0.3, np.float32)  # grey body, so the image's extent is visible
    vol[MARKER] = 1.0
    return vol


def _marker_position(viewer) -> tuple[float, float]:
    """Marker centroid relative to the image's on-screen box: (row, col) in [0, 1]."""
    shot = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(int)
    grey = shot.mean(axis=-1)
    body = np.argwhere(grey > 40)
    marker = np.argwhere(grey > 200)
    assert len(body) and len(marker), "nothing rendered"
    lo, hi = body.min(axis=0), body.max(axis=0)
    row, col = (marker.mean(axis=0) - lo) / np.maximum(hi - lo, 1)
    return float(row), float(col)


def _show(viewer, layer, order) -> tuple[float, float]:
    viewer.dims.order = order
    sliced = order[0]
    viewer.dims.set_point(sliced, layer.data_to_world(CENTRE)[sliced])
    viewer.reset_view()
    return _marker_position(viewer)


def test_superior_is_up_on_screen(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    layer = viewer.add_image(
        _phantom(),
        scale=(2.5, 0.9, 0.8),
        translate=(30.0, -80.0, -100.0),
        contrast_limits=(0, 1),
        interpolation2d="nearest",
    )
    # napari's default camera: superior at the bottom of a coronal view
    row, _ = _show(viewer, layer, CORONAL)
    assert row > 0.5, row

    stop = keep_radiological(viewer)
    row, col = _show(viewer, layer, CORONAL)
    assert row < 0.5 and col > 0.5, (row, col)  # superior up, patient left on screen right
    row, col = _show(viewer, layer, SAGITTAL)
    assert row < 0.5 and col > 0.5, (row, col)  # superior up, posterior on the right
    row, col = _show(viewer, layer, AXIAL)
    assert row > 0.5 and col > 0.5, (row, col)  # anterior up, patient left on screen right
    stop()


def test_reader_alone_gives_radiological_views(make_napari_viewer, tmp_path):
    """No widget: opening a scan with the plugin's reader sets the display; world coordinates
    stay the physical LPS points SimpleITK gives."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(_phantom())
    img.SetSpacing((0.8, 0.9, 2.5))  # x, y, z
    img.SetOrigin((-100.0, -80.0, 30.0))
    path = tmp_path / "marker.nii.gz"
    sitk.WriteImage(img, str(path))

    viewer = make_napari_viewer(show=True)
    [layer] = viewer.open(str(path), plugin="napari-consign")
    index = np.array(CENTRE)
    physical = img.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in index[::-1]))
    np.testing.assert_allclose(layer.data_to_world(index), physical[::-1], atol=1e-6)
    layer.contrast_limits = (0, 1)
    layer.interpolation2d = "nearest"
    row, col = _show(viewer, layer, AXIAL)
    assert row > 0.5 and col > 0.5, (row, col)  # anterior up, patient left on screen right
    row, col = _show(viewer, layer, CORONAL)
    assert row < 0.5 and col > 0.5, (row, col)  # superior up, patient left on screen right
    row, col = _show(viewer, layer, SAGITTAL)
    assert row < 0.5 and col > 0.5, (row, col)  # superior up, posterior on the right
