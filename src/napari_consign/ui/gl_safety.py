"""Remove napari layers in a way that vispy survives: with the canvas's GL context current.

Why: napari 0.9 tears a layer down in ``VispyCanvas._remove_layer``, which closes the layer's
visual (queueing GL deletes) and then calls ``context.finish()``. vispy's ``finish`` *executes*
its GL command queue at once, outside ``paintGL``, where Qt does not guarantee that the canvas's
``QOpenGLWidget`` context is current. The deletes and ``glFinish`` then run against whatever
context happens to be current; after two removals with no repaint between them (a rolled-back
run removing its band layers, a cancelled compare view, ``layers.clear()``) the next repaint
crashes in ``glDrawArrays`` with a segmentation fault (reproduced with plain napari under
Mesa llvmpipe, 5 of 5 runs). Making the canvas context current first removes the crash: the
queued commands then hit the context that owns the objects.

:func:`guard_layer_removal` makes the canvas current on the layer list's ``removing`` event, so
every removal while the widget lives is covered, the user's own included. Uses only public Qt
API (the canvas is found among the widget's window's ``QOpenGLWidget`` children).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def canvas_gl_widgets(anchor: Any) -> list[Any]:
    """The vispy canvases (``QOpenGLWidget``) in ``anchor``'s top-level window; if there are
    none there (not docked yet, or a floating dock), those of every top-level window."""
    from qtpy.QtWidgets import QApplication

    try:
        from qtpy.QtOpenGLWidgets import QOpenGLWidget
    except ImportError:  # Qt5 bindings
        from qtpy.QtWidgets import QOpenGLWidget

    def vispy_canvases(roots: list[Any]) -> list[Any]:
        return [
            gl_widget
            for root in roots
            for gl_widget in root.findChildren(QOpenGLWidget)
            if type(gl_widget).__module__.startswith("vispy") and gl_widget.isValid()
        ]

    window = anchor.window() if anchor is not None else None
    found = vispy_canvases([window]) if window is not None and window is not anchor else []
    # not docked yet, or floated out of the main window: look in every top-level window
    return found or vispy_canvases(list(QApplication.topLevelWidgets()))


def make_canvas_current(anchor: Any) -> bool:
    """Make the viewer canvas's GL context current (True if there was one to make current)."""
    widgets = canvas_gl_widgets(anchor)
    for gl_widget in widgets:
        gl_widget.makeCurrent()
    return bool(widgets)


def remove_layers(viewer: Any, layers: list[Any], anchor: Any) -> None:
    """Remove ``layers`` (those still in ``viewer``) with the canvas context current."""
    for layer in layers:
        make_canvas_current(anchor)
        if layer in viewer.layers:
            viewer.layers.remove(layer)


def guard_layer_removal(viewer: Any, anchor: Any) -> Callable[[], None]:
    """Make the canvas context current before every layer removal in ``viewer``; returns a
    function that stops it."""
    emitter = viewer.layers.events.removing

    def _before_removal(event: Any = None) -> None:
        make_canvas_current(anchor)

    emitter.connect(_before_removal)

    def disconnect() -> None:
        try:
            emitter.disconnect(_before_removal)
        except (TypeError, ValueError, RuntimeError):
            pass

    return disconnect
