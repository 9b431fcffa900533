"""Radiological display through the viewer's camera orientation (world coordinates untouched).

It comes with the data: the plugin's reader and sample-data commands call
:func:`follow_radiological_current` for the viewer they open into, so a scan is displayed
radiologically whether or not the widget is open (the widget and series picker also install
it, harmlessly, for viewers they are given).

napari world coordinates of scans read by this plugin are physical LPS millimetres in (z, y, x)
order: z increases towards superior, y towards posterior, x towards the patient's left. napari's
default camera draws the first displayed axis downwards and the second to the right, which gives
radiological axial views (anterior up, patient left on screen right) but puts superior at the
*bottom* of coronal and sagittal views. ``keep_radiological`` fixes that by setting the camera's
``orientation`` (``viewer.scene.camera`` in napari 0.9, ``viewer.camera`` before; since napari
0.6 a ``(depth, vertical, horizontal)`` tuple of ``'towards'/'away'``, ``'up'/'down'``,
``'left'/'right'``: the direction in which each axis' world coordinate increases) whenever the
displayed axes change:

* vertical axis ``'up'`` when it is the superior axis z (coronal and sagittal: superior up),
  ``'down'`` otherwise (axial: anterior up);
* horizontal axis ``'right'`` (axial and coronal: patient left on screen right; sagittal:
  posterior on the right, anterior on the left);
* depth (3D only visible) chosen so the 3D rendering keeps the physical handedness of LPS, i.e.
  is not mirrored: axial seen from the feet, coronal from the front, sagittal from the left.

The spatial axes are the last three world axes (z is world axis 0 for 3D data, axis 1 when a
time axis comes first). Only the camera changes, never layer transforms, so world coordinates,
measurements and saved masks stay physical. Imports nothing heavy.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

_DEFAULT = ("towards", "down", "right")  # napari's default orientation, right-handed


def _permutation_parity(values: Sequence[int]) -> int:
    """0 for an even permutation of ``sorted(values)``, 1 for an odd one."""
    rank = {v: i for i, v in enumerate(sorted(values))}
    perm = [rank[v] for v in values]
    parity = 0
    for i in range(len(perm)):
        for j in range(i + 1, len(perm)):
            parity ^= perm[i] > perm[j]
    return int(parity)


def radiological_orientation(
    order: Sequence[int], current_depth: str = "towards"
) -> tuple[str, str, str]:
    """Camera orientation ``(depth, vertical, horizontal)`` for ``viewer.dims.order``.

    The last two entries of ``order`` are the vertical and horizontal axes, in 2D and in 3D
    (where the one before them is the depth axis), so the result does not depend on ndisplay.
    ``current_depth`` is kept for data with fewer than three dimensions. Pure function.
    """
    order = [int(a) for a in order]
    ndim = len(order)
    if ndim < 2:
        return (current_depth, _DEFAULT[1], _DEFAULT[2])
    superior = ndim - 3  # z: world axis 0 for (z, y, x); negative (none) for 2D data
    vertical_axis = order[-2]
    vertical = "up" if ndim >= 3 and vertical_axis == superior else "down"
    horizontal = "right"
    if ndim < 3:
        return (current_depth, vertical, horizontal)
    # Depth: the world triple (z, y, x) is left-handed (x, y, z = L, P, S is right-handed), so an
    # even permutation of it is left-handed too; napari's handedness is LEFT iff an odd number of
    # orientation entries differ from its default. Pick depth so the two agree (no mirror image).
    physical_left = _permutation_parity(order[-3:]) == 0
    diffs = (vertical != _DEFAULT[1]) + (horizontal != _DEFAULT[2])
    depth_differs = (diffs % 2 == 0) == physical_left
    depth = "away" if depth_differs else "towards"
    return (depth, vertical, horizontal)


def viewer_camera(viewer: Any) -> Any:
    """The viewer's camera: ``viewer.scene.camera`` (napari >= 0.9, where ``viewer.camera`` is a
    deprecated alias), else ``viewer.camera``."""
    scene = getattr(viewer, "scene", None)
    camera = getattr(scene, "camera", None) if scene is not None else None
    return camera if camera is not None else viewer.camera


def apply_radiological(viewer: Any) -> None:
    """Set the camera orientation once for the currently displayed axes."""
    camera, dims = viewer_camera(viewer), viewer.dims
    current_depth = str(camera.orientation[0])
    wanted = radiological_orientation(dims.order, current_depth)
    if tuple(str(v) for v in camera.orientation) != wanted:
        camera.orientation = wanted


def keep_radiological(viewer: Any) -> Callable[[], None]:
    """Keep ``viewer`` in radiological display; returns a function that stops it.

    Applies the orientation now and again whenever ``viewer.dims.order``, ``ndisplay`` or
    ``ndim`` changes (rolling or transposing dims, 2D/3D toggle, adding higher-dimensional
    layers). Orientation changes the user makes in between are kept until the next such change.
    Calling it twice on one viewer is harmless (both callbacks set the same orientation). Works
    with ``napari.Viewer`` and ``napari.components.ViewerModel``.
    """
    events = viewer.dims.events

    def _update(event: Any = None) -> None:
        apply_radiological(viewer)

    emitters = (events.order, events.ndisplay, events.ndim)
    for emitter in emitters:
        emitter.connect(_update)
    _update()

    def disconnect() -> None:
        for emitter in emitters:
            emitter.disconnect(_update)

    return disconnect


_FOLLOWED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def follow_radiological(viewer: Any) -> None:
    """Keep ``viewer`` radiological for the rest of its life; once per viewer object."""
    key = id(viewer)
    if _FOLLOWED.get(key) is viewer:
        return
    keep_radiological(viewer)
    try:
        _FOLLOWED[key] = viewer
    except TypeError:  # not weakly referenceable: the callbacks are still installed
        pass


def follow_radiological_current() -> None:
    """:func:`follow_radiological` for napari's current viewer, if there is one (the reader
    runs inside ``viewer.open``, which makes that viewer current). Never raises."""
    try:
        import napari

        viewer = napari.current_viewer()
        if viewer is not None:
            follow_radiological(viewer)
    except Exception:  # display nicety only: never break reading a scan
        return
