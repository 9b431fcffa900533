"""Initial display range of a scan by modality (pure numpy; no napari).

CT values are Hounsfield units, so CT opens with a fixed soft-tissue window and offers the usual
presets; other modalities (MR, PET...) have arbitrary units and open between robust percentiles.
Windows are ``(level, width)`` in HU (Radiopaedia's common values).
"""

from __future__ import annotations

import numpy as np

CT_WINDOWS: dict[str, tuple[float, float]] = {
    "soft tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "lung": (-600.0, 1500.0),
}
DEFAULT_CT_WINDOW = "soft tissue"
PERCENTILES = (0.5, 99.5)
_MAX_SAMPLES = 1_000_000


def window_limits(name: str) -> tuple[float, float]:
    """``(low, high)`` contrast limits of a CT window preset (``KeyError`` if unknown)."""
    level, width = CT_WINDOWS[name]
    return level - width / 2, level + width / 2


def percentile_limits(array: np.ndarray, percentiles: tuple[float, float] = PERCENTILES):
    """Robust ``(low, high)`` of an array (on at most a million evenly strided samples); never
    equal (a constant image gets ``(v, v + 1)``); NaNs ignored."""
    flat = np.asarray(array).ravel()
    sample = flat[:: max(1, flat.size // _MAX_SAMPLES)].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, percentiles))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def display_kwargs(array: np.ndarray, modality: str) -> dict:
    """``contrast_limits`` for ``viewer.add_image``: the soft-tissue window for CT, percentiles
    for any other DICOM modality; {} when the modality is unknown (non-DICOM files)."""
    modality = modality.strip().upper()
    if not modality:
        return {}
    if modality == "CT":
        return {"contrast_limits": window_limits(DEFAULT_CT_WINDOW)}
    return {"contrast_limits": percentile_limits(array)}
