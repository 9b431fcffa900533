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
