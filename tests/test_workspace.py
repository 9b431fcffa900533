"""The widget's Qt-free model: choices, their rules and events, per-scan results (no viewer)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from napari_consign import analysis as an
from napari_consign.conformal.bands import Bands
from napari_consign.workspace import (
    ALPHA_STEPS,
    DEFAULT_ALPHA,
    RunState,
    Workspace,
    check_image,
    snap_alpha,
)


def _record(signal) -> list:
    seen: list = []
    signal.connect(lambda *args: seen.append(args[0] if args else None))
    return seen


def _shipped(method: str):
    return an.bundled_bundle_path(method)


def test_importing_the_workspace_loads_neither_qt_nor_napari():
    code = (
        "import sys, napari_consign.workspace; "
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui', 'superqt')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_defaults_tick_crc_and_coat_and_follow_the_shipped_bundles():
    s = Workspace()
    assert s.methods == ("crc", "coat")
    assert s.selected_methods() == ["crc", "coat"]
    assert s.alpha == DEFAULT_ALPHA
    s.set_calibration("bundled")
    assert s.n_samples == s.bundle_settings()["n_samples"]  # what the bundles were made with


def test_alpha_snaps_to_the_slider_grid_and_always_emits():
    s = Workspace()
    seen = _record(s.events.alpha)
    assert s.set_alpha(0.234) == 0.23
    assert s.set_alpha(0.0) == 0.01
    assert s.set_alpha(9.0) == ALPHA_STEPS / 100
    assert s.set_alpha(ALPHA_STEPS / 100) == 0.5  # unchanged, still emitted: views refresh
    assert seen == [0.23, 0.01, 0.5, 0.5]
    assert snap_alpha(0.105) in (0.1, 0.11)


def test_bundle_files_allow_exactly_the_methods_they_hold(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a bundle")
    s = Workspace()
    availability = _record(s.events.availability)
    methods = _record(s.events.methods)
    s.set_calibration("files", files=[_shipped("consign"), junk])
    assert availability and methods
    assert s.availability["consign"] == ""
    assert all(s.availability[m] for m in an.METHOD_NAMES if m != "consign")
    # crc and coat were ticked and cannot run: unticked, and no other method is ticked for
    # the user (the defaults apply only when nothing was ticked)
    assert s.methods == () and s.selected_methods() == []
    s.set_methods([])
    s.refresh_methods()
    assert s.methods == ("consign",)


def test_a_ticked_method_that_cannot_run_is_not_selected():
    s = Workspace()
    s.set_calibration("given", methods={"crc": object()})
    assert s.selected_methods() == ["crc"]
    s.set_methods(["crc", "consign"])  # consign is greyed: ticked, never run
    assert s.methods == ("crc", "consign")
    assert s.selected_methods() == ["crc"]


def test_run_problems_say_what_to_do():
    s = Workspace()
    assert s.run_problem() == ""
    s.set_methods([])
    assert "Tick at least one method" in s.run_problem()
    s.set_methods(["crc"])
    s.set_calibration("calibrate")
    assert "Choose an NPZ file or a folder" in s.run_problem()
    s.set_calibration("files")  # no files: no method can run
    assert "Tick at least one method" in s.run_problem()
    s.set_calibration("bundled")
    s.set_methods(["crc"])
    calibrated = s.bundle_settings()["n_samples"]
    s.n_samples = calibrated + 1
    problem = s.run_problem()
    assert f"made with {calibrated} Monte-Carlo samples" in problem
    assert f"asks for {calibrated + 1}" in problem
    s.n_samples = calibrated
    assert s.run_problem() == ""


def test_specs_carry_the_choices(tmp_path):
    s = Workspace()
    s.n_samples, s.device, s.mode, s.max_cases = 4, "cpu", "tta", 33
    model = s.model_spec()
    assert (model.paths, model.n_samples, model.device, model.mode) == ((), 4, "cpu", "tta")
    s.set_model_files([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert s.use_model_files and s.model_spec().paths == (tmp_path / "a.pt", tmp_path / "b.pt")
    s.use_model_files = False  # the bundled UNet again; the files are remembered
    assert s.model_spec().paths == () and s.model_files
    s.set_calibration("calibrate", source=tmp_path, save_dir=tmp_path / "out")
    cal = s.calibration_spec()
    assert (cal.kind, cal.source, cal.save_dir, cal.max_cases) == (
        "calibrate",
        tmp_path,
        tmp_path / "out",
        33,
    )
    assert s.calibration.describe == tmp_path.name
    with pytest.raises(ValueError, match="calibration kind"):
        s.set_calibration("nonsense")


def _analysis() -> an.ImageAnalysis:
    """Real CRC-style bands on a 2 x 4 x 4 score volume (thresholds per grid alpha)."""
    rng = np.random.default_rng(0)
    scores = rng.random((2, 4, 4))
    alphas, tau_outer, tau_inner = [0.1, 0.2], [0.2, 0.3], [0.9, 0.8]
    bands = Bands.from_thresholds(scores, alphas, tau_outer, tau_inner, method="crc")
    analysis = an.ImageAnalysis(shape=(2, 4, 4), spacing_zyx=(2.0, 1.0, 1.0))
    analysis.bands["crc"] = bands
    return analysis


def test_results_are_kept_per_scan_key_and_emit():
    s = Workspace()
    seen = _record(s.results_changed)
    analysis = _analysis()
    s.store("scan-a", analysis)
    assert s.analysis("scan-a") is analysis and s.analysis("scan-b") is None
    assert s.analysis(None) is None
    s.set_alpha(0.2)
    truth = np.zeros((2, 4, 4), np.uint8)
    truth[:, 1:3, 1:3] = 1
    numbers = s.numbers("scan-a", truth)
    assert list(numbers) == ["crc"]
    assert numbers["crc"] == analysis.numbers("crc", 0.2, truth)
    assert s.shown_methods("scan-a") == ["crc"]
    assert s.shown_methods("scan-b") == s.selected_methods()  # not analysed: the ticked ones
    assert s.forget("scan-a") and not s.forget("scan-a")
    assert seen == ["scan-a", "scan-a"]
    assert s.numbers("scan-a") == {}


def test_guarantee_lines_say_where_a_method_snapped():
    s = Workspace()
    s.store("k", _analysis())
    s.set_alpha(0.13)  # the bands' grid holds 0.1 and 0.2 only
    [line] = s.guarantee_lines("k")
    snapped = s.analysis("k").snapped("crc", 0.13)
    assert line.startswith(f"[snapped to α = {snapped:.2f}]")
    s.set_alpha(snapped)
    assert not s.guarantee_lines("k")[0].startswith("[snapped")
    assert len(s.guarantee_lines(None)) == len(s.selected_methods())


def test_run_state_and_status_are_evented():
    s = Workspace()
    runs, statuses = _record(s.events.run), _record(s.events.status)
    run = RunState(image=object(), analysis=_analysis())
    s.run = run
    s.fail("no scan")
    s.run = None
    assert runs == [run, None]
    assert statuses == ["no scan"] and s.last_error == "no scan"


class _Layer:
    """Duck-typed image layer: what check_image reads."""

    def __init__(self, data, rgb=False, multiscale=False):
        self.name, self.data, self.rgb, self.multiscale = "scan", data, rgb, multiscale
        self.ndim = np.ndim(data)


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (None, "Open a scan first"),
        (_Layer(np.zeros((4, 4, 3)), rgb=True), "RGB colour image"),
        (_Layer(np.zeros((4, 4)), multiscale=True), "multiscale"),
        (_Layer(np.zeros((2, 2, 4, 4))), "4D (2, 2, 4, 4)"),
        (_Layer(np.zeros(4)), "expected a 2D or 3D scan"),
        (_Layer(np.zeros((4, 4), complex)), "real-valued intensities"),
        (_Layer(np.zeros((4, 4), "U1")), "real-valued intensities"),
        (_Layer(np.zeros((3, 4, 4), np.int16)), ""),
        (_Layer(np.zeros((4, 4), bool)), ""),
    ],
)
def test_check_image(layer, expected):
    problem = check_image(layer)
    assert (expected in problem) if expected else problem == ""
