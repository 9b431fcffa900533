"""Run: the Run and Cancel buttons, the progress bar and the status line.

It shows ``workspace.busy``, ``workspace.progress`` (``total == 0``: a busy bar) and
``workspace.status``; the buttons call back into the widget, which owns the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ...workspace import Workspace


class RunPanel(QWidget):
    """Run / Cancel, progress and status of the workspace's run."""

    def __init__(
        self,
        workspace: Workspace,
        on_run: Callable[[], Any],
        on_cancel: Callable[[], Any],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.workspace = workspace
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda: on_run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: on_cancel())
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        workspace.events.busy.connect(self._show_busy)
        workspace.events.progress.connect(self._show_progress)
        workspace.events.status.connect(lambda text: self.status.setText(text))

    def _show_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _show_progress(self, progress: tuple[int, int]) -> None:
        done, total = progress
        self.progress.setRange(0, total)
        self.progress.setValue(done)
