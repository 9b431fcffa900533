"""Error level alpha: the slider, the guarantee in plain words, the scan's caveat, the legend
and the ring's drawing mode.

The slider edits ``workspace.alpha`` (0.01..0.50 in 0.01 steps) and follows it back; the texts
are set by the widget, which knows the scan, its analysis and the compared pair.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QGroupBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from ...workspace import ALPHA_STEPS, Workspace

CAUTION_STYLE = "color: #e69f00; font-weight: bold;"


def _wrapping_label(rich: bool = False) -> QLabel:
    label = QLabel("")
    label.setWordWrap(True)
    if rich:
        label.setTextFormat(Qt.TextFormat.RichText)
    return label


class AlphaPanel(QGroupBox):
    """Alpha slider with its value, guarantee, caveat, legend and ring-fill check box."""

    def __init__(
        self, workspace: Workspace, on_release: Callable[[], Any], parent: QWidget | None = None
    ) -> None:
        super().__init__("Error level α", parent)
        self.workspace = workspace
        lay = QVBoxLayout(self)
        row = QHBoxLayout()
        self.alpha_slider = QSlider(Qt.Orientation.Horizontal)
        self.alpha_slider.setRange(1, ALPHA_STEPS)
        self.alpha_slider.setValue(round(workspace.alpha * 100))
        self.alpha_slider.setTracking(True)
        self.alpha_slider.valueChanged.connect(lambda v: workspace.set_alpha(v / 100))
        self.alpha_slider.sliderReleased.connect(lambda: on_release())
        self.alpha_label = QLabel("")
        self.alpha_label.setMinimumWidth(70)
        row.addWidget(self.alpha_slider, 1)
        row.addWidget(self.alpha_label)
        lay.addLayout(row)
        self.guarantee_label = _wrapping_label()
        self.caveat_label = (
            _wrapping_label()
        )  # the scan checks: the guarantee's scope, or a caution
        self.legend_label = _wrapping_label(rich=True)
        self.ring_fill_box = QCheckBox("fill the ring in 2D")
        self.ring_fill_box.setToolTip(
            "off: the outer band is drawn as its boundary over the filled inner band; "
            "on: the ring (outer minus inner) is filled. 3D always shows filled volumes."
        )
        self.ring_fill_box.toggled.connect(lambda on: setattr(workspace, "ring_fill", bool(on)))
        workspace.events.ring_fill.connect(lambda on: self.ring_fill_box.setChecked(on))
        for w in (self.guarantee_label, self.caveat_label, self.legend_label, self.ring_fill_box):
            lay.addWidget(w)
        workspace.events.alpha.connect(self._show_alpha)
        self._show_alpha(workspace.alpha)

    def _show_alpha(self, alpha: float, *_: Any) -> None:
        self.alpha_slider.blockSignals(True)
        self.alpha_slider.setValue(round(alpha * 100))
        self.alpha_slider.blockSignals(False)
        self.alpha_label.setText(f"α = {alpha:.2f}")

    def show_texts(self, guarantees: list[str], legend: str) -> None:
        self.guarantee_label.setText("\n".join(guarantees))
        self.legend_label.setText(legend)

    def show_caveat(self, check: Any) -> None:
        """Beside the guarantee, persistently: for which scans it holds, or a caution when the
        scan failed a check against the model card (modality, spacing, intensities)."""
        if check is None:
            self.caveat_label.setText("")
            return
        self.caveat_label.setText(check.caveat)
        caution = bool(getattr(check.report, "warnings", ()))
        self.caveat_label.setStyleSheet(CAUTION_STYLE if caution else "")
