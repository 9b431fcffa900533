"""Model, sampling and calibration: a folded section (every setting has a working default).

Each control edits one field of the :class:`~napari_consign.workspace.Workspace` and follows it
back (a calibration may set the sample count it was made with); picking files opens a dialog.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QWidget,
)
from superqt import QCollapsible

from ...workspace import Workspace

MODEL_BUILTIN, MODEL_FILES = "Bundled lesion UNet", "Model file(s)…"
CAL_BUNDLED, CAL_FILES, CAL_NOW = "Shipped bundles", "Bundle file(s)…", "Calibrate now…"
CAL_TEXT = {"bundled": CAL_BUNDLED, "files": CAL_FILES, "calibrate": CAL_NOW}


def _devices() -> list[str]:
    try:
        from ...models import available_devices

        return list(available_devices())
    except Exception:  # torch broken: the run reports it clearly
        return ["cpu"]


def _spin(low: int, high: int, value: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


class SettingsPanel(QCollapsible):
    """Model file(s), sampling mode, samples per slice, device, calibration, max cases."""

    def __init__(self, workspace: Workspace, parent: QWidget | None = None) -> None:
        super().__init__("Model, sampling and calibration", parent)
        self.workspace = workspace
        body = QWidget()
        form = QFormLayout(body)
        self.model_combo = QComboBox()
        self.model_combo.addItems([MODEL_BUILTIN, MODEL_FILES])
        self.model_combo.activated.connect(self._on_model_choice)
        self.model_label = QLabel("")
        form.addRow("model", self._row(self.model_combo, self.model_label))
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("MC dropout", "mc_dropout")
        self.mode_combo.addItem("test-time flips (≤ 4)", "tta")
        self.mode_combo.setToolTip("an ensemble (several files) gives one sample per member")
        self.mode_combo.currentIndexChanged.connect(
            lambda *_: setattr(workspace, "mode", self.mode_combo.currentData() or "mc_dropout")
        )
        workspace.events.mode.connect(
            lambda mode: self.mode_combo.setCurrentIndex(self.mode_combo.findData(mode))
        )
        form.addRow("sampling", self.mode_combo)
        self.ns_spin = _spin(2, 200, workspace.n_samples, "Monte-Carlo samples per slice")
        self.ns_spin.valueChanged.connect(lambda v: setattr(workspace, "n_samples", int(v)))
        workspace.events.n_samples.connect(lambda n: self.ns_spin.setValue(n))
        form.addRow("samples", self.ns_spin)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", *_devices()])
        self.device_combo.currentTextChanged.connect(lambda t: setattr(workspace, "device", t))
        workspace.events.device.connect(lambda d: self.device_combo.setCurrentText(d))
        form.addRow("device", self.device_combo)
        self.cal_combo = QComboBox()
        self.cal_combo.addItems([CAL_BUNDLED, CAL_FILES, CAL_NOW])
        self.cal_combo.activated.connect(self._on_cal_choice)
        self.cal_label = QLabel("")
        self.cal_label.setWordWrap(True)
        form.addRow("calibration", self._row(self.cal_combo, self.cal_label))
        tip = "calibrate now: at most this many calibration units"
        self.max_cases_spin = _spin(10, 100000, workspace.max_cases, tip)
        self.max_cases_spin.valueChanged.connect(lambda v: setattr(workspace, "max_cases", int(v)))
        workspace.events.max_cases.connect(lambda n: self.max_cases_spin.setValue(n))
        form.addRow("max cases", self.max_cases_spin)
        self.addWidget(body)
        workspace.events.model_files.connect(self._show_model)
        workspace.events.use_model_files.connect(self._show_model)
        workspace.events.calibration.connect(self._show_calibration)
        self._show_calibration()

    @staticmethod
    def _row(combo: QComboBox, label: QLabel) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(combo)
        row.addWidget(label, 1)
        return row

    def _show_model(self, *_: Any) -> None:
        workspace = self.workspace
        self.model_combo.setCurrentText(MODEL_FILES if workspace.use_model_files else MODEL_BUILTIN)
        self.model_label.setText(workspace.model_spec().describe if workspace.model_files else "")

    def _show_calibration(self, *_: Any) -> None:
        cal = self.workspace.calibration
        self.cal_combo.setCurrentText(CAL_TEXT.get(cal.kind, CAL_BUNDLED))
        self.cal_label.setText(cal.describe)
        self.max_cases_spin.setEnabled(cal.kind == "calibrate")

    def _on_model_choice(self, *_: Any) -> None:
        if self.model_combo.currentText() != MODEL_FILES:
            self.workspace.use_model_files = False
            return
        paths, _ = QFileDialog.getOpenFileNames(
            self,
            "Model file(s): several files form an ensemble",
            "",
            "Models (*.pt *.pth *.ts *.safetensors);;All files (*)",
        )
        if paths:
            self.workspace.set_model_files(paths)
        else:  # cancelled: the files chosen before, if any
            self.workspace.use_model_files = bool(self.workspace.model_files)
            self._show_model()

    def _on_cal_choice(self, *_: Any) -> None:
        choice = self.cal_combo.currentText()
        if choice == CAL_FILES:
            paths, _ = QFileDialog.getOpenFileNames(
                self, "Calibration bundle(s)", "", "Bundles (*.npz)"
            )
            if paths:
                self.workspace.set_calibration("files", files=paths)
                return
        elif choice == CAL_NOW:
            path, _ = QFileDialog.getOpenFileName(
                self,
                "Cases with ground truth: an NPZ (images, masks); cancel to pick a folder",
                "",
                "NPZ (*.npz)",
            )
            if not path:
                path = QFileDialog.getExistingDirectory(
                    self, "Folder of image + mask NIfTI files (X.nii.gz, X_mask.nii.gz)"
                )
            if path:
                self.workspace.set_calibration("calibrate", source=path)
                return
        self.workspace.set_calibration("bundled")
        self._show_calibration()  # the combo shows the choice even when nothing changed
