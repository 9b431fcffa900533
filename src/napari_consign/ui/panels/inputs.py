"""Scan and methods: the image and ground-truth pickers and the method check boxes.

The pickers are magicgui ``ComboBox`` es whose choices are the viewer's image (labels) layers,
minus the plugin's own, each keyed by ``layer.unique_id``; :meth:`ScanPanel.reset_choices`
re-reads the layer list (the widget calls it on the list's events). The chosen keys live in
``workspace.image`` and ``workspace.truth``; the ticked methods in ``workspace.methods``.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import ComboBox
from qtpy.QtWidgets import QCheckBox, QFormLayout, QGridLayout, QGroupBox, QWidget

from ... import analysis as an
from ...guarantee_text import guarantee, method_label
from ...workspace import Workspace
from ..layers import is_plugin_layer, layer_key

NO_TRUTH = "(none)"
#: a labels layer named with one of these on the scan's grid is taken as its ground truth
TRUTH_HINTS = ("truth", "mask", "label", "lesion", "seg")


class _TruthPicker(ComboBox):
    """A layer picker whose first choice is "no ground truth" (None)."""

    null_string = NO_TRUTH


class ScanPanel(QGroupBox):
    """The scan to analyse, its optional ground truth, and the methods to run."""

    def __init__(self, viewer: Any, workspace: Workspace, parent: QWidget | None = None) -> None:
        super().__init__("Scan and methods", parent)
        self.viewer = viewer
        self.workspace = workspace
        form = QFormLayout(self)
        self.image_picker = ComboBox(choices=lambda _w: self._choices("Image"))
        self.image_picker.tooltip = "the image layer to analyse (2D or 3D, one channel)"
        self.truth_picker = _TruthPicker(choices=lambda _w: self._choices("Labels"), nullable=True)
        self.truth_picker.tooltip = "optional ground-truth labels on the same grid, for TPR"
        self.image_combo, self.truth_combo = self.image_picker.native, self.truth_picker.native
        self.image_picker.changed.connect(self._on_image_picked)
        self.truth_picker.changed.connect(self._on_truth_picked)
        form.addRow("image", self.image_combo)
        form.addRow("ground truth", self.truth_combo)
        grid = QGridLayout()
        self.method_boxes: dict[str, QCheckBox] = {}
        for i, m in enumerate(an.METHOD_NAMES):
            cb = QCheckBox(method_label(m))
            cb.toggled.connect(self._on_ticked)
            self.method_boxes[m] = cb
            grid.addWidget(cb, i // 3, i % 3)
        grid.setHorizontalSpacing(6)
        form.addRow(grid)  # full width: no label column beside the check boxes
        workspace.events.methods.connect(self._show_methods)
        workspace.events.availability.connect(self._show_availability)
        workspace.events.image.connect(lambda key: self._pick(self.image_picker, key))
        workspace.events.truth.connect(lambda key: self._pick(self.truth_picker, key))
        self._show_availability()
        self._show_methods()

    # ------------------------------------------------------------------ layers
    def layers(self, kind: str) -> list[Any]:
        """The viewer's ``kind`` ("Image" or "Labels") layers that are not the plugin's."""
        import napari.layers

        cls = getattr(napari.layers, kind)
        return [
            lyr for lyr in self.viewer.layers if isinstance(lyr, cls) and not is_plugin_layer(lyr)
        ]

    def _choices(self, kind: str) -> list[tuple[str, Any]]:
        return [(lyr.name, layer_key(lyr)) for lyr in self.layers(kind)]

    def reset_choices(self) -> None:
        """Re-read the layer list; with no ground truth chosen, guess it."""
        self.image_picker.reset_choices()
        self.truth_picker.reset_choices()
        # magicgui emits only when the current choice went away: follow it in any case
        self.workspace.image = self.image_picker.value
        self.workspace.truth = self.truth_picker.value
        if self.truth_picker.value is None:
            guess = self.guess_truth()
            if guess is not None:
                self.truth_picker.value = layer_key(guess)

    def find(self, key: Any) -> Any:
        """The layer of the viewer whose key is ``key`` (None when there is none)."""
        if key is None:
            return None
        return next((lyr for lyr in self.viewer.layers if layer_key(lyr) == key), None)

    def image_layer(self) -> Any:
        """The chosen image layer (None if there is none)."""
        layer = self.find(self.workspace.image)
        if layer is None and self.layers("Image"):  # e.g. removed: pick again
            self.reset_choices()
            layer = self.find(self.workspace.image)
        return layer

    def truth_layer(self) -> Any:
        return self.find(self.workspace.truth)

    def guess_truth(self) -> Any:
        """A labels layer that is evidently the chosen image's ground truth: the same shape and
        named as one (``truth``, ``mask``, ``label``, ``lesion``, ``seg``), else None."""
        image = self.find(self.workspace.image)
        if image is None:
            return None
        for layer in self.layers("Labels"):
            same_grid = tuple(layer.data.shape) == tuple(image.data.shape)
            if same_grid and any(h in layer.name.lower() for h in TRUTH_HINTS):
                return layer
        return None

    def choose_image(self, layer: Any) -> None:
        self._pick(self.image_picker, layer_key(layer))

    def choose_truth(self, layer: Any | None) -> None:
        self._pick(self.truth_picker, None if layer is None else layer_key(layer))

    def _pick(self, picker: ComboBox, key: Any) -> None:
        if picker.value == key:
            return
        if key not in picker.choices:
            picker.reset_choices()
        if key in picker.choices:
            picker.value = key

    def _on_image_picked(self, key: Any) -> None:
        self.workspace.image = key

    def _on_truth_picked(self, key: Any) -> None:
        self.workspace.truth = key

    # ------------------------------------------------------------------ methods
    def _on_ticked(self, *_: Any) -> None:
        self.workspace.set_methods(m for m, cb in self.method_boxes.items() if cb.isChecked())

    def _show_methods(self, *_: Any) -> None:
        for m, cb in self.method_boxes.items():
            cb.blockSignals(True)
            cb.setChecked(m in self.workspace.methods)
            cb.blockSignals(False)

    def _show_availability(self, *_: Any) -> None:
        for m, cb in self.method_boxes.items():
            why = self.workspace.availability.get(m, "")
            cb.setEnabled(not why)
            cb.setToolTip(why or guarantee(m, self.workspace.alpha))
