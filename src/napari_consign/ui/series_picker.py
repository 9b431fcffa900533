"""Dock widget "Open DICOM series": pick one stack of a DICOM folder, CD or DICOMDIR and open it.

A DICOM folder often holds several series (localisers, scouts, reformats) and a series several
stacks (projections, echoes, slabs). The reader opens the largest stack that forms a volume and
lists the others; this widget lets the user choose:

1. a folder or DICOMDIR (typed, or **Browse...**), searched recursively (bounded) with
   :func:`napari_consign.io.dicom.scan_folder`, with a progress bar for large trees;
2. a stack from the table (series number, description, modality, orientation, size, slices,
   acquisition time, subfolder; stacks that cannot form a volume say why in "Note"; the Series
   Instance UID and stack key are in each row's tooltip);
3. **Open**: the stack is read through the reader's own layer building
   (:func:`napari_consign.io.napari_layers.layer_data_tuples`: geometry, warnings, display range)
   and added to the viewer, kept in radiological display (:mod:`napari_consign.radiological`).
4. **CT window**: soft tissue, bone, brain or lung presets for the active image layer.

The table is sized so every column shows at its default size. Bad folders (missing, not a folder,
no DICOM image series) and unreadable stacks give a clear notification and add nothing. Methods
for scripts and tests (no dialogs): :meth:`set_folder`, :meth:`select_series`,
:meth:`open_selected`, :meth:`apply_window`. Heavy modules (SimpleITK, napari layers) are imported
when used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
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

COLUMNS = (
    "Series",
    "Description",
    "Modality",
    "Orientation",
    "Size (x, y)",
    "Slices",
    "Acquired",
    "Folder",
    "Note",
)
KEY_ROLE = Qt.ItemDataRole.UserRole  # the stack key (SeriesInfo.key), stored on column 0
MAX_TABLE_WIDTH = 1400  # px: wider tables scroll instead of widening the dock further


def _notify(kind: str, message: str) -> None:
    from napari.utils import notifications

    getattr(notifications, f"show_{kind}")(message)


class SeriesPickerWidget(QWidget):
    """Choose a folder, pick one of its DICOM series, open it as an image layer."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.folder: Path | None = None
        self.series: list[SeriesInfo] = []
        self._stop_radiological: Any = None
        self._opened: list = []

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

        self.window_box = QComboBox()
        self.window_box.addItems(list(_ct_windows()))
        self.window_box.setToolTip("CT window (level/width in HU) for the active image layer")
        self.window_box.activated.connect(
            lambda _i: self.apply_window(self.window_box.currentText())
        )
        window_row = QHBoxLayout()
        window_row.addWidget(QLabel("CT window:"))
        window_row.addWidget(self.window_box, 1)

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
        layout.addLayout(window_row)

    # ------------------------------------------------------------------------------------------
    def _browse(self) -> None:
        start = str(self.folder) if self.folder else ""
        folder = QFileDialog.getExistingDirectory(
            self, "DICOM folder (subfolders are searched)", start
        )
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
        """Search ``folder`` (subfolders too, bounded; or a DICOMDIR file) and list its image
        stacks (volumes first, most slices first); returns them."""
        from ..io.dicom import is_dicomdir, scan_folder
        from ..io.formats import is_zarr
        from ..io.napari_layers import HeaderProgress

        text = str(folder).strip()
        self.folder_edit.setText(text)
        self.folder = Path(text).expanduser() if text else None
        if self.folder is None:
            return self._refuse("Choose a DICOM folder first.")
        if not self.folder.exists():
            return self._refuse(f"No such folder: {self.folder}.")
        if not self.folder.is_dir() and not is_dicomdir(self.folder):
            return self._refuse(
                f"{self.folder} is a file, not a folder: choose the folder that holds the "
                "DICOM slices (or open the file with File > Open)."
            )
        if is_zarr(self.folder):
            return self._refuse(f"{self.folder} is a zarr store, not a DICOM folder.")
        try:
            with HeaderProgress() as progress:
                series, skipped = scan_folder(self.folder, progress=progress)
        except Exception as exc:  # never a traceback from a dock widget
            return self._refuse(f"Could not scan {self.folder}: {exc}")
        if not series:
            why = f" {len(skipped)} DICOM file(s) were not images: {', '.join(skipped[:3])}."
            return self._refuse(
                f"No DICOM image series in {self.folder}."
                f"{why if skipped else ''} Choose the folder (or DICOMDIR) that holds the image "
                "slices (subfolders are searched)."
            )
        self.series = list(series)
        self._fill_table(skipped)
        return self.series

    def _row_values(self, s: SeriesInfo) -> tuple[str, ...]:
        x, y = s.slices[0].size[:2]
        number = f"#{s.series_number}" if s.series_number else "?"
        base = self.folder if self.folder.is_dir() else self.folder.parent
        try:
            where = str(Path(s.files[0]).parent.relative_to(base))
        except ValueError:
            where = str(Path(s.files[0]).parent)
        return (
            f"{number} ({s.stack}/{s.n_stacks})" if s.stack else number,
            s.description or "(no description)",
            s.modality or "?",
            s.orientation or "?",
            f"{x} x {y}",
            str(s.n_slices),
            s.acquisition_time or "?",
            "." if where in ("", ".") else where,
            s.problem.split(",")[0].split(" (")[0] if s.problem else "",
        )

    def _fill_table(self, skipped: list[str]) -> None:
        self.table.setRowCount(len(self.series))
        first_good = None
        for r, s in enumerate(self.series):
            if not s.problem and first_good is None:
                first_good = r
            for c, value in enumerate(self._row_values(s)):
                item = QTableWidgetItem(value)
                item.setToolTip(
                    f"{s.summary()}\nkey {s.key}" + (f"\n{s.problem}" if s.problem else "")
                )
                if c == 0:
                    item.setData(KEY_ROLE, s.key)
                if s.problem:
                    item.setForeground(Qt.GlobalColor.gray)
                self.table.setItem(r, c, item)
        n_series = len({s.uid for s in self.series})
        text = f"{len(self.series)} stack(s) of {n_series} image series in {self.folder.name}."
        if skipped:
            text += f" Skipped {len(skipped)}: {', '.join(skipped[:3])}."
        self.status.setText(text)
        self._fit_columns()
        self.table.clearSelection()
        self.table.selectRow(first_good if first_good is not None else 0)
        self._update_buttons()

    def _fit_columns(self) -> None:
        """Every column at its contents' width, and the table at least as wide as all of them
        (up to MAX_TABLE_WIDTH), so the dock opens without hiding a column."""
        self.table.resizeColumnsToContents()
        total = sum(self.table.columnWidth(c) for c in range(self.table.columnCount()))
        frame = 2 * self.table.frameWidth() + self.table.verticalScrollBar().sizeHint().width()
        self.table.setMinimumWidth(min(total + frame, MAX_TABLE_WIDTH))

    def _update_buttons(self) -> None:
        self.open_button.setEnabled(self.selected_uid() is not None)

    # ------------------------------------------------------------------------------------------
    def selected_uid(self) -> str | None:
        """Key of the selected stack (``SeriesInfo.key``: the Series Instance UID, with
        ``:<stack>`` when the series has several stacks), or None."""
        rows = {i.row() for i in self.table.selectedItems()}
        if len(rows) != 1:
            return None
        item = self.table.item(rows.pop(), 0)
        return item.data(KEY_ROLE) if item is not None else None

    def select_series(self, uid: str) -> None:
        """Select the row of stack key ``uid`` (a plain Series UID: its first stack);
        ``KeyError`` if it is not listed."""
        for r, s in enumerate(self.series):
            if uid.strip() in (s.key, s.uid):
                self.table.clearSelection()
                self.table.selectRow(r)
                return
        raise KeyError(f"series {uid} is not in {self.folder}")

    def open_selected(self) -> list:
        """Open the selected series as layers (the reader's tuples); [] and a notification on
        failure. The viewer is kept in radiological display."""
        from napari.layers import Layer

        from ..io.errors import ConsignIOError
        from ..io.napari_layers import layer_data_tuples
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
        self._opened = layers
        if self._stop_radiological is None:
            self._stop_radiological = keep_radiological(self.viewer)
        self.status.setText(f"Opened {layers[0].name if layers else 'nothing'}.")
        return layers

    def apply_window(self, name: str) -> bool:
        """Set CT window ``name`` on the active image layer (else the last opened one); False
        and a notification if there is no image layer."""
        from napari.layers import Image

        from ..io.display import window_limits

        layer = self.viewer.layers.selection.active
        if not isinstance(layer, Image):
            layer = next((ly for ly in self._opened if isinstance(ly, Image)), None)
        if layer is None:
            _notify("warning", "Open or select an image layer first.")
            return False
        layer.contrast_limits = window_limits(name)
        return True


def _ct_windows() -> dict[str, tuple[float, float]]:
    from ..io.display import CT_WINDOWS

    return CT_WINDOWS
