"""Helpers of the UI tests (imported as ``ui_helpers``; pytest puts this folder on the path)."""

from __future__ import annotations

import numpy as np


def open_scan(viewer, small_scan):
    """Open the small scan with the plugin's reader and its mask as labels."""
    from napari_consign.io import read_volume

    [image] = viewer.open(str(small_scan[0]), plugin="napari-consign")
    mask = read_volume(small_scan[1])
    kw = mask.layer_kwargs()
    kw["name"] = "truth"
    truth = viewer.add_labels(mask.array.astype(np.uint8), **kw)
    return image, truth


def wait_done(qtbot, widget, timeout: int = 60_000) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)
