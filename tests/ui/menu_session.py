"""One user session in a real napari window, run as a subprocess by ``test_ui_menu_path.py``.

``python menu_session.py SCAN NPZ SCENARIO`` opens SCAN with the plugin's reader, opens the
widget from the Plugins menu (npe2, proxy viewer), runs the bundled model with the shipped
bundles, and at one moment of the run does what a user might: cancel before sampling, cancel
after the first bands appear, cancel mid-calibration, cancel during a 3D render, remove the
scan. Then it forces repaints and a canvas screenshot. It exits 0 and prints ``OK SCENARIO``
only if napari survived and the layer list is as it should be; a crash shows as a signal exit.
"""

from __future__ import annotations

import faulthandler
import sys
import time

faulthandler.enable()

import torch  # noqa: E402, F401  (before Qt: pytorch#11326)


def pump(app, viewer, seconds: float = 0.5) -> None:
    end = time.time() + seconds
    while time.time() < end:
        for widget in app.allWidgets():  # repaint everything, the GL canvas included
            widget.update()
        app.processEvents()
        time.sleep(0.01)


def main(scan: str, npz: str, scenario: str) -> int:
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    [image] = viewer.open(scan, plugin="napari-consign")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-consign", "Conformal uncertainty")
    # the shipped bundles' own N_s (another N_s is refused: its guarantee would not hold)
    widget.device_combo.setCurrentText("cpu")
    widget.set_methods(["crc", "coat"])
    if scenario == "3d":
        viewer.dims.ndisplay = 3
    if scenario == "calibrating":
        widget.set_calibration("calibrate", source=npz)
        widget.set_methods(["crc"])
    pump(app, viewer)
    before = [layer.name for layer in viewer.layers]
    fired = {"done": False}

    def act() -> None:
        if fired["done"]:
            return
        fired["done"] = True
        if scenario == "remove-scan":
            viewer.layers.remove(image.name)
        else:
            widget.cancel()

    if scenario in ("after-first-bands", "3d", "remove-scan"):
        viewer.layers.events.inserted.connect(lambda event: QTimer.singleShot(0, act))
    elif scenario == "calibrating":
        original = widget._on_event

        def on_event(ev):
            original(ev)
            if getattr(ev, "stage", "") == "calibrating":
                QTimer.singleShot(0, act)

        widget._on_event = on_event
    job = widget.run()
    assert job is not None, widget.status.text()
    if scenario == "before-sampling":
        act()
    deadline = time.time() + 300
    while widget.busy and time.time() < deadline:
        pump(app, viewer, 0.05)
    assert not widget.busy, "the run did not stop"
    assert fired["done"], "the scenario's moment never came"
    pump(app, viewer, 1.0)
    shot = viewer.screenshot(canvas_only=True, flash=False)  # renders the scene again
    if shot is None:  # seen once under heavy load: grab the window instead (a repaint too)
        assert not widget.window().grab().isNull()
    else:
        assert shot.size > 0
    names = [layer.name for layer in viewer.layers]
    expected = [n for n in before if n != image.name] if scenario == "remove-scan" else before
    assert names == expected, (names, expected)
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()
    viewer.dims.ndisplay = 5 - viewer.dims.ndisplay  # the viewer stays usable: toggle 2D/3D
    pump(app, viewer, 0.5)
    viewer.screenshot(canvas_only=True, flash=False)
    print("OK", scenario, flush=True)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
