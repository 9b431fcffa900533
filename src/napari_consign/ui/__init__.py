"""napari user interface: the dock widget, band layers, comparison and workers.

Kept light: importing ``napari_consign.ui`` imports neither Qt nor torch; the widget class is
imported on first use (``napari_consign.ui.ConsignWidget``), as npe2 does through the manifest
(``napari_consign.ui.main_widget:ConsignWidget``).
"""

from __future__ import annotations

__all__ = ["ConsignWidget"]


def __getattr__(name: str):
    if name == "ConsignWidget":
        from .main_widget import ConsignWidget

        return ConsignWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
