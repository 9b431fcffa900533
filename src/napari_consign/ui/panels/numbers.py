"""Numbers: band sizes per method at alpha (mL, or pixels for a stack of 2D cases) and, with a
ground truth, the outer band's TPR and the inner band's false positives."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QGroupBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...guarantee_text import method_label
from ..layers import layer_key
from .compare import Host

#: how long the slider must rest before the numbers are recomputed (they cost a pass over
#: every method's volume)
NUMBERS_DELAY_MS = 150

#: (key, header, format); sizes in mL (the unit is in the group's title)
NUMBER_COLUMNS = (
    ("alpha", "α", "{:.2f}"),
    ("outer_ml", "outer", "{:.2f}"),
    ("inner_ml", "inner", "{:.2f}"),
    ("ring_ml", "ring", "{:.2f}"),
    ("tpr", "TPR", "{:.2f}"),
    ("inner_fp_ml", "FP", "{:.2f}"),  # the inner band's false positives
)
#: For images without a physical volume (a stack of 2D cases): sizes in pixels.
PIXEL_COLUMNS = tuple(
    (key.replace("_ml", "_voxels"), header, "{:d}" if key.endswith("_ml") else fmt)
    for key, header, fmt in NUMBER_COLUMNS
)
NUMBERS_TITLE = {True: "Numbers (this scan; sizes in mL)", False: "Numbers (sizes in pixels)"}


class NumbersPanel(QGroupBox):
    """A table of the chosen scan's numbers, one row per method."""

    def __init__(self, host: Host, parent: QWidget | None = None) -> None:
        super().__init__(NUMBERS_TITLE[True], parent)
        self.host = host  # the dock widget: the chosen scan, truth, analysis and workspace
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(NUMBERS_DELAY_MS)
        self._timer.timeout.connect(self.update_rows)
        lay = QVBoxLayout(self)
        self.table = QTableWidget(0, len(NUMBER_COLUMNS))
        self.table.setHorizontalHeaderLabels([c[1] for c in NUMBER_COLUMNS])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(30)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setWordWrap(True)
        self.table.setMinimumHeight(90)
        self.table.setMaximumHeight(140)
        lay.addWidget(self.table)

    def schedule(self, now: bool = False) -> None:
        """Recompute the numbers now, or once alpha has rested for a moment."""
        if now:
            self._timer.stop()
            self.update_rows()
        else:
            self._timer.start()

    def truth_array(self, image: Any) -> np.ndarray | None:
        """The chosen ground truth as a (Z, H, W) array, or None (says so on a shape mismatch)."""
        truth = self.host.truth_layer()
        if truth is None or image is None:
            return None
        arr = np.asarray(truth.data)
        if arr.shape != tuple(image.data.shape):
            self.host.workspace.status = (
                f"ground truth '{truth.name}' has shape {arr.shape}, the scan "
                f"{tuple(image.data.shape)}: TPR not shown"
            )
            return None
        return arr[None] if arr.ndim == 2 else arr

    def numbers(self, image: Any = None) -> dict[str, dict]:
        """Per method of ``image`` (default: the chosen scan): band volumes at the current
        alpha and, with ground truth, TPR and the inner band's false positives."""
        image = image if image is not None else self.host.image_layer()
        if self.host.analysis(image) is None:
            return {}
        return self.host.workspace.numbers(layer_key(image), self.truth_array(image))

    def update_rows(self) -> None:
        rows = self.numbers()
        physical = all("outer_ml" in v for v in rows.values())
        columns = NUMBER_COLUMNS if physical else PIXEL_COLUMNS
        self.setTitle(NUMBERS_TITLE[physical])
        self.table.setHorizontalHeaderLabels([c[1] for c in columns])
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([method_label(m) for m in rows])
        for i, values in enumerate(rows.values()):
            for j, (key, _, fmt) in enumerate(columns):
                v = values.get(key)
                text = "" if v is None or (isinstance(v, float) and np.isnan(v)) else fmt.format(v)
                self.table.setItem(i, j, QTableWidgetItem(text))
