"""Numbers: band sizes per method at alpha (mL, or pixels for a stack of 2D cases) and, with a
ground truth, the outer band's TPR and the inner band's false positives."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QGroupBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...guarantee_text import method_label

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

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(NUMBERS_TITLE[True], parent)
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

    def show_rows(self, rows: dict[str, dict]) -> None:
        """``rows``: method -> its numbers (see ``ImageAnalysis.numbers``)."""
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
