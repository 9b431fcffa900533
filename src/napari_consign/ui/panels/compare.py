"""Compare: two methods side by side (napari grid mode) and their disagreement layer.

The panel asks its host (the dock widget) for the chosen scan, its analysis and band layers,
and drives the host's :class:`~napari_consign.ui.compare.CompareView`.
"""

from __future__ import annotations

from typing import Any, Protocol

from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ...guarantee_text import method_label


class Host(Protocol):
    """What the compare and export panels need from the dock widget."""

    viewer: Any
    workspace: Any
    compare: Any
    bands: Any
    alpha: float

    def image_layer(self) -> Any: ...
    def truth_layer(self) -> Any: ...
    def analysis(self, image_layer: Any = None) -> Any: ...
    def band_layer(self, method: str, image_layer: Any = None) -> Any: ...
    def fail(self, message: str) -> None: ...
    def refresh_texts(self) -> None: ...
    def notify(self, kind: str, message: str) -> None: ...
    def reason(self, exc: BaseException) -> str: ...
    def default_export_path(self, method: str) -> Any: ...
    def export_bands(self, method: str, path: Any) -> Any: ...
    def add_plausible_segmentations(self, method: str, n: int) -> Any: ...


def fill_methods(combo: QComboBox, methods: list[str], default: int) -> None:
    """Offer ``methods`` (labelled) in ``combo``, keeping its choice when it is still there."""
    current = combo.currentData()
    combo.blockSignals(True)
    combo.clear()
    for m in methods:
        combo.addItem(method_label(m), m)
    if current in methods:
        combo.setCurrentIndex(methods.index(current))
    elif methods:
        combo.setCurrentIndex(min(default, len(methods) - 1))
    combo.blockSignals(False)


def set_checked_quietly(button: QPushButton, on: bool) -> None:
    button.blockSignals(True)
    button.setChecked(on)
    button.blockSignals(False)


def button_row(*widgets: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w, 0 if isinstance(w, QLabel) else 1)
    return row


class ComparePanel(QWidget):
    """Method A vs method B: side by side, disagreement."""

    def __init__(self, host: Host, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.compare_a, self.compare_b = QComboBox(), QComboBox()
        self.side_button = QPushButton("Side by side")
        self.side_button.setCheckable(True)
        self.side_button.toggled.connect(lambda on: self.set_compare(on))
        self.disagree_button = QPushButton("Disagreement")
        self.disagree_button.setCheckable(True)
        self.disagree_button.toggled.connect(lambda on: self.set_disagreement(on))
        lay.addLayout(button_row(self.compare_a, QLabel("vs"), self.compare_b))
        lay.addLayout(button_row(self.side_button, self.disagree_button))

    def show_methods(self, methods: list[str]) -> None:
        """The methods with bands on the chosen scan."""
        fill_methods(self.compare_a, methods, 0)
        fill_methods(self.compare_b, methods, 1)
        two, view = len(methods) >= 2, self.host.compare
        self.side_button.setEnabled(two or view.enabled)
        self.disagree_button.setEnabled(two or view.disagreement is not None)

    def _pair(self, a: str | None, b: str | None) -> tuple[str, str] | None:
        analysis = self.host.analysis()
        if analysis is None:
            self.host.fail("Run the analysis first.")
            return None
        a = a or self.compare_a.currentData()
        b = b or self.compare_b.currentData()
        if a is None or b is None or a == b:
            self.host.fail("Choose two different methods to compare.")
            return None
        missing = [m for m in (a, b) if m not in analysis.bands]
        if missing:
            self.host.fail(f"No bands for {', '.join(map(method_label, missing))} on this scan.")
            return None
        for combo, m in ((self.compare_a, a), (self.compare_b, b)):
            idx = combo.findData(m)
            if idx >= 0:
                combo.setCurrentIndex(idx)
        return a, b

    def set_compare(self, enabled: bool, a: str | None = None, b: str | None = None) -> bool:
        """Side by side on/off (grid mode); returns whether it is on."""
        on = enabled and self._enable(a, b)
        if not enabled:
            self.host.compare.disable()
        set_checked_quietly(self.side_button, on)
        return on

    def _enable(self, a: str | None, b: str | None) -> bool:
        pair = self._pair(a, b)
        if pair is None:
            return False
        layers = [self.host.band_layer(m) for m in pair]
        if any(lyr is None or lyr not in self.host.viewer.layers for lyr in layers):
            self.host.fail("A band layer of these methods was removed; run again to recreate it.")
            return False
        self.host.compare.enable(self.host.image_layer(), *layers)
        return True

    def set_disagreement(self, enabled: bool, a: str | None = None, b: str | None = None):
        """Disagreement layer of the two methods' outer bands on/off (returns the layer)."""
        layer = None
        if not enabled:
            self.host.compare.hide_disagreement()
        else:
            pair = self._pair(a, b)
            if pair is None:
                set_checked_quietly(self.disagree_button, False)
                return None
            bands = self.host.analysis().bands
            alpha = self.host.alpha
            layer = self.host.compare.show_disagreement(
                self.host.image_layer(),
                pair[0],
                bands[pair[0]],
                alpha,
                pair[1],
                bands[pair[1]],
                alpha,
            )
        set_checked_quietly(self.disagree_button, enabled)
        self.host.refresh_texts()
        return layer

    def follow_alpha(self) -> None:
        """Bring the disagreement layer to the current alpha (the scan it was made for)."""
        view = self.host.compare
        layer = view.disagreement
        pair = None if layer is None else layer.metadata.get("napari_consign_pair")
        if not pair:
            return
        alpha = self.host.alpha
        for key, analysis in self.host.workspace.analyses().items():
            image = self.host.bands.images.get(key)
            if all(m in analysis.bands for m in pair) and image is not None:
                if image.name in layer.name:
                    ba, bb = analysis.bands[pair[0]], analysis.bands[pair[1]]
                    view.update_disagreement(ba, alpha, bb, alpha)
                    return
