"""Run: the Run and Cancel buttons, the progress bar and the status line.

It shows ``session.busy``, ``session.progress`` (``total == 0``: a busy bar) and
``session.status``; the buttons call back into the widget, which owns the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ...session import Session


class RunPanel(QWidget):
    """Run / Cancel, progress and status of the session's run."""

    def __init__(
        self,
        session: Session,
        on_run: Callable[[], Any],
        on_cancel: Callable[[], Any],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
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
        session.events.busy.connect(self._show_busy)
        session.events.progress.connect(self._show_progress)
        session.events.status.connect(lambda text: self.status.setText(text))

    def _show_busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _show_progress(self, progress: tuple[int, int]) -> None:
        done, total = progress
        self.progress.setRange(0, total)
        self.progress.setValue(done)
