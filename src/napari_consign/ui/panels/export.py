"""Export: a method's bands to NIfTI (a save dialog) and plausible segmentations drawn from
CONSIGN's (or the pixel-wise baseline's) set."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QFileDialog, QPushButton, QSpinBox, QVBoxLayout, QWidget

from .compare import Host, button_row, fill_methods


class ExportPanel(QWidget):
    """Export the chosen method's bands; sample its set."""

    def __init__(self, host: Host, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.export_combo = QComboBox()
        self.export_button = QPushButton("Export NIfTI…")
        self.export_button.clicked.connect(self._export_dialog)
        self.n_plausible = QSpinBox()
        self.n_plausible.setRange(1, 100)
        self.n_plausible.setValue(8)
        self.n_plausible.setToolTip("how many segmentations to draw")
        self.plausible_button = QPushButton("Sample the set")
        self.plausible_button.setToolTip(
            "CONSIGN / pixel-wise: add a stack of plausible segmentations drawn from the set"
        )
        self.plausible_button.clicked.connect(self._plausible_clicked)
        lay.addLayout(button_row(self.export_combo, self.export_button))
        lay.addLayout(button_row(self.n_plausible, self.plausible_button))

    def show_methods(self, methods: list[str], can_sample: bool) -> None:
        fill_methods(self.export_combo, methods, 0)
        self.export_button.setEnabled(bool(methods))
        self.plausible_button.setEnabled(can_sample)

    def _export_dialog(self) -> None:
        method = self.export_combo.currentData()
        if method is None:
            self.host.fail("Run the analysis first.")
            return
        default = str(self.host.default_export_path(method))
        path, _ = QFileDialog.getSaveFileName(
            self, "Export bands as NIfTI", default, "NIfTI (*.nii.gz *.nii)"
        )
        if not path:
            return
        try:
            written = self.host.export_bands(method, path)
        except Exception as exc:  # refused or failed: say why, keep going
            self.host.fail(f"Export failed: {self.host.reason(exc)}")
            return
        self.host.notify("info", f"Bands written to {written}")

    def _plausible_clicked(self) -> None:
        analysis = self.host.analysis()
        methods = [m for m in (analysis.bands if analysis else {}) if analysis.can_sample(m)]
        if not methods:
            self.host.fail("Sampling from the set needs CONSIGN (or pixel-wise) bands.")
            return
        chosen = self.export_combo.currentData()
        method = chosen if chosen in methods else methods[0]
        try:
            self.host.add_plausible_segmentations(method, int(self.n_plausible.value()))
        except Exception as exc:
            self.host.fail(f"Sampling failed: {self.host.reason(exc)}")
