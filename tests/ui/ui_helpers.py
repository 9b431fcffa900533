"""Helpers of the UI tests (imported as ``ui_helpers``; pytest puts this folder on the path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage


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


def boundary(mask2d: np.ndarray) -> np.ndarray:
    """Reference boundary of a 2D mask (independent of the plugin's code): the pixels a
    4-connected erosion removes, with everything beyond the array counted as outside."""
    mask2d = np.asarray(mask2d, dtype=bool)
    return mask2d & ~ndimage.binary_erosion(mask2d, border_value=0)


def expected_contour(bands, alpha: float, z: int) -> np.ndarray:
    """What a band layer in contour mode shows on axial slice ``z``: the inner band filled (2)
    and the outer band's boundary (1, over the inner fill where the two meet)."""
    inner, outer = bands.masks(alpha)
    out = np.where(inner[z], 2, 0).astype(np.uint8)
    out[boundary(outer[z])] = 1
    return out


def consign_cases_npz(path: Path, n: int = 10, seed: int = 3) -> Path:
    """``n`` synthetic 32 x 32 lesion units of clear contrast as an NPZ (``images``, ``masks``).

    The bundled model segments clear synthetic lesions well, so with N_s = 4 every CONSIGN
    calibration unit is certified at a small lambda and each grid alpha is calibrated in well
    under a second (a unit that is never certified makes the lambda search run to lambda_max).
    """
    from napari_consign.synthetic import lesion_cases

    d = lesion_cases(4 * n, size=32, n_samples=2, seed=seed)
    keep = np.flatnonzero(d["contrast"] > 0.6)[:n]
    assert len(keep) == n, "not enough clear synthetic lesions: change the seed"
    np.savez(path, images=d["images"][keep], masks=d["masks"][keep])
    return path


def open_plugin_widget(viewer):
    """The widget as napari's Plugins menu opens it (npe2 hands it a proxy viewer)."""
    from napari.utils._proxies import PublicOnlyProxy

    _dock, widget = viewer.window.add_plugin_dock_widget("napari-consign", "Conformal uncertainty")
    assert isinstance(widget.viewer, PublicOnlyProxy), "not opened through the plugin machinery"
    return widget


def stop_and_join(qtbot, widget) -> None:
    """Cancel a run and wait until its worker thread has finished (no thread outlives a test)."""
    widget.cancel()
    job = widget._job
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    for running in (job, widget._prep_job):
        worker = getattr(running, "worker", None)
        if worker is not None:
            qtbot.waitUntil(lambda w=worker: not w.is_running, timeout=60_000)
