"""The dock's panels over the workspace: layer pickers that follow the layer list, controls and
workspace kept in step (the widget opened from the plugin menu, as users do)."""

from __future__ import annotations

import numpy as np
import pytest
from ui_helpers import open_plugin_widget

from napari_consign.ui.layers import KIND_KEY, layer_key

# a napari viewer each: left out of the quick tier like the other viewer-open cases (the
# workspace's rules are covered there by tests/test_workspace.py, without Qt)
pytestmark = pytest.mark.slow


def test_pickers_follow_the_layer_list(make_napari_viewer, shipped_bundles):
    viewer = make_napari_viewer()
    widget = open_plugin_widget(viewer)
    assert widget.image_layer() is None and widget.workspace.image is None
    assert widget.truth_combo.currentText() == "(none)"
    first = viewer.add_image(np.zeros((3, 8, 8), np.float32), name="first")
    second = viewer.add_image(np.ones((3, 8, 8), np.float32), name="second")
    viewer.add_labels(np.zeros((3, 8, 8), np.uint8), name="notes")  # not named as a truth
    assert widget.truth_combo.currentText() == "(none)"
    mask = viewer.add_labels(np.zeros((3, 8, 8), np.uint8), name="lesion mask")
    ours = viewer.add_labels(
        np.zeros((3, 8, 8), np.uint8), name="bands", metadata={KIND_KEY: "bands"}
    )
    assert widget.workspace.image == layer_key(first)
    assert widget.workspace.truth == layer_key(mask)  # guessed: same grid, named as a truth
    names = [widget.image_combo.itemText(i) for i in range(widget.image_combo.count())]
    truths = [widget.truth_combo.itemText(i) for i in range(widget.truth_combo.count())]
    assert names == ["first", "second"]
    assert truths == ["(none)", "notes", "lesion mask"]  # the plugin's own layers are not offered
    assert ours.name not in truths
    widget.set_image(second)
    assert widget.workspace.image == layer_key(second)
    assert widget.image_combo.currentText() == "second"
    widget.image_combo.setCurrentIndex(0)  # the user picks in the combo box
    assert widget.workspace.image == layer_key(first)
    viewer.layers.remove(first)
    assert widget.workspace.image == layer_key(second)
    assert widget.image_layer().name == "second"
    viewer.layers.remove(second)
    assert widget.workspace.image is None and widget.image_layer() is None
    widget.set_truth(None)
    assert widget.workspace.truth is None


def test_controls_and_workspace_stay_in_step(make_napari_viewer, shipped_bundles):
    viewer = make_napari_viewer()
    widget = open_plugin_widget(viewer)
    workspace = widget.workspace
    widget.ns_spin.setValue(7)
    widget.device_combo.setCurrentText("cpu")
    widget.max_cases_spin.setValue(50)
    spec = workspace.model_spec()
    assert (spec.n_samples, spec.device, workspace.max_cases) == (7, "cpu", 50)
    workspace.n_samples = 12
    assert widget.ns_spin.value() == 12
    widget.alpha_slider.setValue(30)
    assert workspace.alpha == 0.3 and widget.alpha_label.text() == "α = 0.30"
    assert widget.set_alpha(0.424) == 0.42 and widget.alpha_slider.value() == 42
    widget.method_boxes["consign"].setChecked(True)
    assert "consign" in workspace.methods
    workspace.set_methods(["at"])
    ticked = [m for m, box in widget.method_boxes.items() if box.isChecked()]
    assert ticked == ["at"]
    widget.set_ring_mode("fill")
    assert widget.ring_fill_box.isChecked() and workspace.ring_fill
    widget.set_calibration("given", methods={"crc": object()})
    assert widget.cal_label.text() == "calibrated methods given by a script"
    assert not widget.method_boxes["coat"].isEnabled() and widget.method_boxes["crc"].isEnabled()
    assert not widget.max_cases_spin.isEnabled()
