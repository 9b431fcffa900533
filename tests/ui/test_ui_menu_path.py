"""The widget as napari's Plugins menu opens it: results kept, re-runs in place, cancel at any
moment without crashing napari (real windows under the virtual display)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ui_helpers import consign_cases_npz, open_scan, wait_done

SESSION = Path(__file__).with_name("menu_session.py")


def test_menu_opened_widget_keeps_its_results(qtbot, viewer_widget, small_scan, notes):
    viewer, widget = viewer_widget
    _image, truth = open_scan(viewer, small_scan)
    widget.set_methods(["crc", "coat"])
    widget.set_truth(truth)
    widget.run()
    wait_done(qtbot, widget)
    assert not notes["error"], notes["error"]
    assert widget.analysis() is not None
    assert widget.table.rowCount() == 2
    assert all(widget.table.item(i, 1).text() for i in range(2))  # outer mL filled
    assert widget.side_button.isEnabled() and widget.disagree_button.isEnabled()
    assert widget.export_button.isEnabled()
    names = [layer.name for layer in viewer.layers]

    widget.run()  # a second run replaces each method's layer in place
    wait_done(qtbot, widget)
    assert [layer.name for layer in viewer.layers] == names
    assert not any("[1]" in n for n in names)
    assert widget.table.rowCount() == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    "scenario", ["before-sampling", "after-first-bands", "calibrating", "3d", "remove-scan"]
)
def test_cancel_at_any_moment_keeps_napari_alive(small_scan, tmp_path, scenario):
    npz = consign_cases_npz(tmp_path / "cases.npz")
    env = dict(os.environ, PYTHONFAULTHANDLER="1")
    assert env.get("DISPLAY"), "pytest-xvfb provides the virtual display"
    proc = subprocess.run(
        [sys.executable, str(SESSION), str(small_scan[0]), str(npz), scenario],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, f"exit {proc.returncode} (negative: killed by a signal)\n{tail}"
    assert f"OK {scenario}" in proc.stdout, tail


@pytest.mark.slow
def test_dock_fits_a_1366_by_768_screen(qtbot, viewer_widget, small_scan, tmp_path):
    """Beside the canvas on a small laptop screen, the guarantee text is wholly visible
    without scrolling and the table needs no horizontal scroll bar."""
    from qtpy.QtCore import QPoint, QRect

    from napari_consign.ui.gl_safety import canvas_gl_widgets
    from napari_consign.ui.main_widget import DOCK_WIDTH

    viewer, widget = viewer_widget
    open_scan(viewer, small_scan)
    widget.set_methods(["crc", "coat"])
    window = widget.window()
    window.showNormal()
    window.resize(1366, 768)
    widget.run()
    wait_done(qtbot, widget)
    qtbot.wait(300)
    assert window.width() <= 1366 and window.height() <= 768
    label, viewport = widget.guarantee_label, widget.scroll.viewport()
    assert "misses at most 10%" in label.text()
    rect = QRect(label.mapTo(viewport, QPoint(0, 0)), label.size())
    assert viewport.rect().contains(rect), (
        rect,
        viewport.rect(),
    )
    assert label.height() >= label.heightForWidth(label.width())  # no line cut off
    assert widget.legend_label.isVisible() and "COAT" in widget.legend_label.text()
    assert not widget.table.horizontalScrollBar().isVisible()
    shots = Path(os.environ.get("NAPARI_CONSIGN_SHOTS", tmp_path))
    assert window.grab().save(str(shots / "window_1366x768.png"))
    # the dock keeps to its preferred width (napari's own left docks may be wider when an
    # earlier session widened them: their width is not ours to test)
    [canvas] = canvas_gl_widgets(widget)
    assert widget.width() <= DOCK_WIDTH + 40, widget.width()
    assert canvas.width() > widget.width(), (canvas.width(), widget.width())


@pytest.mark.slow
def test_methods_have_own_colours_legend_and_titled_panels(qtbot, viewer_widget, small_scan):
    from napari_consign.ui.compare import grid_of
    from napari_consign.ui.layers import DISAGREEMENT_COLOURS, method_colours

    viewer, widget = viewer_widget
    open_scan(viewer, small_scan)
    widget.set_methods(["crc", "coat"])
    widget.run()
    wait_done(qtbot, widget)
    crc, coat = widget.band_layer("crc"), widget.band_layer("coat")
    for layer, method in ((crc, "crc"), (coat, "coat")):
        inner, ring = method_colours(method)
        assert tuple(layer.colormap.map(2)) == pytest.approx(inner)
        assert tuple(layer.colormap.map(1)[:3]) == pytest.approx(ring[:3])
    assert method_colours("crc") != method_colours("coat")
    rings = {method_colours(m)[1][:3] for m in ("crc", "coat", "at", "consign", "pixelwise")}
    assert not rings & {c[:3] for c in DISAGREEMENT_COLOURS.values()}

    assert widget.set_compare(True, "crc", "coat")
    assert crc.name_overlay.visible and coat.name_overlay.visible  # titled panels
    widget.set_disagreement(True, "crc", "coat")
    grid = grid_of(viewer)
    assert grid.stride == 3  # scan, bands, disagreement in each panel
    shown = [layer for layer in viewer.layers if layer.visible]
    assert sum("disagreement" in layer.name for layer in shown) == 2
    assert "CRC only" in widget.legend_label.text() and "both" in widget.legend_label.text()
    widget.set_disagreement(False)
    assert grid.stride == 2
    widget.set_compare(False)
    assert not crc.name_overlay.visible and not grid.enabled


@pytest.mark.slow
def test_export_default_name_and_case_stack_in_pixels(qtbot, viewer_widget, small_scan):
    from napari_consign._sample_data import test_cases_2d

    viewer, widget = viewer_widget
    open_scan(viewer, small_scan)
    widget.set_methods(["crc"])
    widget.run()
    wait_done(qtbot, widget)
    path = widget.default_export_path("crc")
    assert path.parent == small_scan[0].parent and " " not in path.name
    assert path.name.endswith("_crc_bands_a0.10.nii.gz")

    for data, kwargs, kind in test_cases_2d():
        viewer._add_layer_from_data(data[:3], kwargs, kind)
    stack = viewer.layers["2D test cases"]
    assert widget.truth_combo.currentText() != "(none)"  # the ground truth is pre-selected
    widget.set_image(stack)
    widget.run(stack)
    wait_done(qtbot, widget)
    nums = widget.numbers()["crc"]
    assert "outer_ml" not in nums and nums["outer_voxels"] >= 0
    assert widget.numbers_box.title() == "Numbers (sizes in pixels)"


def test_scan_checks_show_beside_the_guarantee(qtbot, viewer_widget, small_scan, notes):
    """A persistent line under the guarantee: its scope on a scan like the calibration scans,
    a caution (not a toast) when a check against the model card fails."""
    from napari_consign.io.napari_layers import MODALITY_KEY

    viewer, widget = viewer_widget
    image, _ = open_scan(viewer, small_scan)
    widget.set_methods(["crc"])
    widget.run()
    wait_done(qtbot, widget)
    text = widget.caveat_label.text()
    assert "holds on average over scans like" in text and "Caution" not in text

    image.metadata = {**image.metadata, MODALITY_KEY: "CT"}  # an MRI model on a CT
    widget.run()
    wait_done(qtbot, widget)
    assert widget.caveat_label.text().startswith("Caution"), widget.caveat_label.text()
    assert widget.caveat_label.isVisible()
    assert not any("Caution" in m for kind in notes.values() for m in kind)  # not a toast
