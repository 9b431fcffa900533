"""Dock widget "Open DICOM series": pick one series of a DICOM folder and open it.

A DICOM folder often holds several series (localisers, scouts, reformats). The reader opens the
one with the most slices and lists the others; this widget lets the user choose:

1. a folder (typed, or **Browse...**), scanned with :func:`napari_consign.io.dicom.scan_folder`
   (the same scan as :func:`napari_consign.io.list_dicom_series`);
2. a series from the table (description, modality, size, files, Series Instance UID; series
   that do not form one volume are marked "mixed stack");
3. **Open**: the series is read through the reader's own layer building
   (:func:`napari_consign.io._reader.layer_data_tuples`, same geometry, warnings and notes) and
   added to the viewer, which is kept in radiological display (:mod:`.orientation`).

Bad folders (missing, not a folder, no DICOM image series) and unreadable series give a clear
notification and add nothing. Methods for scripts and tests (no dialogs): :meth:`set_folder`,
:meth:`select_series`, :meth:`open_selected`. Heavy modules (SimpleITK, napari layers) are
imported when used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    import napari

    from ..io.dicom import SeriesInfo

COLUMNS = ("Description", "Modality", "Size (x, y, slices)", "Files", "Series UID", "Note")
UID_COLUMN = COLUMNS.index("Series UID")


def _notify(kind: str, message: str) -> None:
    from napari.utils import notifications

    getattr(notifications, f"show_{kind}")(message)


def _stack_problem(series: SeriesInfo) -> str:
    """'' if the series forms one volume, else the reason (cheap: headers already read)."""
    from ..io.dicom import check_stack
    from ..io.errors import DicomSeriesError

    try:
        check_stack(series)
    except DicomSeriesError as exc:
        return exc.problem
    return ""


class SeriesPickerWidget(QWidget):
    """Choose a folder, pick one of its DICOM series, open it as an image layer."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.folder: Path | None = None
        self.series: list[SeriesInfo] = []
        self._stop_radiological: Any = None

        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("DICOM folder")
        self.folder_edit.returnPressed.connect(lambda: self.set_folder(self.folder_edit.text()))
        self.browse_button = QPushButton("Browse...")
        self.browse_button.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.browse_button)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemDoubleClicked.connect(lambda _item: self.open_selected())

        self.status = QLabel("Choose a folder of DICOM files.")
        self.status.setWordWrap(True)
        self.open_button = QPushButton("Open")
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(self.open_selected)

        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.open_button)

    # ------------------------------------------------------------------------------------------
    def _browse(self) -> None:
        start = str(self.folder) if self.folder else ""
        folder = QFileDialog.getExistingDirectory(self, "DICOM folder", start)
        if folder:
            self.set_folder(folder)

    def _clear(self, status: str) -> None:
        self.series = []
        self.table.setRowCount(0)
        self.status.setText(status)
        self._update_buttons()

    def _refuse(self, problem: str) -> list:
        self._clear(problem)
        _notify("error", problem)
        return []

    def set_folder(self, folder: str | Path) -> list[SeriesInfo]:
        """Scan ``folder`` and list its image series (most slices first); returns them."""
        from ..io.dicom import scan_folder
        from ..io.formats import is_zarr

        text = str(folder).strip()
        self.folder_edit.setText(text)
        self.folder = Path(text).expanduser() if text else None
        if self.folder is None:
            return self._refuse("Choose a DICOM folder first.")
        if not self.folder.exists():
            return self._refuse(f"No such folder: {self.folder}.")
        if not self.folder.is_dir():
            return self._refuse(
                f"{self.folder} is a file, not a folder: choose the folder that holds the "
                "DICOM slices (or open the file with File > Open)."
            )
        if is_zarr(self.folder):
            return self._refuse(f"{self.folder} is a zarr store, not a DICOM folder.")
        try:
            series, skipped = scan_folder(self.folder)
        except Exception as exc:  # never a traceback from a dock widget
            return self._refuse(f"Could not scan {self.folder}: {exc}")
        if not series:
            why = f" {len(skipped)} DICOM file(s) were not images: {', '.join(skipped[:3])}."
            return self._refuse(
                f"No DICOM image series in {self.folder}."
                f"{why if skipped else ''} Choose the folder that holds the image slices "
                "(subfolders are not searched)."
            )
        self.series = list(series)
        self._fill_table(skipped)
        return self.series

    def _fill_table(self, skipped: list[str]) -> None:
        self.table.setRowCount(len(self.series))
        first_good = None
        for r, s in enumerate(self.series):
            x, y = s.slices[0].size[:2]
            problem = _stack_problem(s)
            if not problem and first_good is None:
                first_good = r
            number = f"#{s.series_number} " if s.series_number else ""
            values = (
                f"{number}{s.description}".strip() or "(no description)",
                s.modality or "?",
                f"{x} x {y} x {s.n_slices}",
                str(len(s.slices)),
                s.uid,
                "mixed stack: cannot open as one volume" if problem else "",
            )
            for c, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setToolTip(problem or s.summary())
                if problem:
                    item.setForeground(Qt.GlobalColor.gray)
                self.table.setItem(r, c, item)
        n = len(self.series)
        text = f"{n} image series in {self.folder.name}."
        if skipped:
            text += f" Skipped {len(skipped)} file(s): {', '.join(skipped[:3])}."
        self.status.setText(text)
        self.table.clearSelection()
        self.table.selectRow(first_good if first_good is not None else 0)
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.open_button.setEnabled(self.selected_uid() is not None)

    # ------------------------------------------------------------------------------------------
    def selected_uid(self) -> str | None:
        """Series Instance UID of the selected row, or None."""
        rows = {i.row() for i in self.table.selectedItems()}
        if len(rows) != 1:
            return None
        item = self.table.item(rows.pop(), UID_COLUMN)
        return item.text() if item is not None else None

    def select_series(self, uid: str) -> None:
        """Select the row of series ``uid``; ``KeyError`` if it is not listed."""
        for r, s in enumerate(self.series):
            if s.uid == uid.strip():
                self.table.clearSelection()
                self.table.selectRow(r)
                return
        raise KeyError(f"series {uid} is not in {self.folder}")

    def open_selected(self) -> list:
        """Open the selected series as layers (the reader's tuples); [] and a notification on
        failure. The viewer is kept in radiological display."""
        from napari.layers import Layer

        from ..io._reader import layer_data_tuples
        from ..io.errors import ConsignIOError
        from ..radiological import keep_radiological

        uid = self.selected_uid()
        if self.folder is None or uid is None:
            _notify("warning", "Choose a DICOM folder and a series first.")
            return []
        try:
            tuples = layer_data_tuples(str(self.folder), series_uid=uid)
        except ConsignIOError as exc:
            _notify("error", str(exc))
            return []
        except Exception as exc:  # never a traceback from a dock widget
            _notify("error", f"Could not open series {uid} in {self.folder}: {exc}")
            return []
        layers = [self.viewer.add_layer(Layer.create(*t)) for t in tuples]
        if self._stop_radiological is None:
            self._stop_radiological = keep_radiological(self.viewer)
        self.status.setText(f"Opened {layers[0].name if layers else 'nothing'}.")
        return layers
