"""The widget's per-image state: bands per method and the numbers read from them (Qt-free)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..conformal.consign_decomposition import slice_units
from ..conformal.errors import ConformalInputError
from ..conformal.metrics import band_sizes, inner_loss, tpr, voxel_volume
from ..conformal.registry import NAMES
from .events import (
    AnalysisResult,
    MethodBands,
    MethodFailed,
    MethodsReady,
    ScanChecked,
    SlicePreview,
)


@dataclass
class ImageAnalysis:
    """Per analysed image: its bands per method and what the numbers need.

    Owned by the widget on the GUI thread; fed by :meth:`apply` with the generator's events.
    """

    shape: tuple[int, ...]  # (Z, H, W)
    spacing_zyx: tuple[float, ...] | None = None
    model_id: str = ""
    methods: dict = field(default_factory=dict)
    bands: dict = field(default_factory=dict)
    preview: dict = field(default_factory=dict)  # method -> (z, one-slice Bands)
    errors: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    result: AnalysisResult | None = None
    scan_check: ScanChecked | None = None  # OOD report and the guarantee's caveat

    def apply(self, event: Any) -> None:
        """Record one event of :func:`run_analysis`."""
        if isinstance(event, ScanChecked):
            self.scan_check = event
        elif isinstance(event, MethodsReady):
            self.methods = dict(event.methods)
            self.model_id = event.model_id
            self.notes = event.notes
        elif isinstance(event, SlicePreview):
            for name, b in event.bands.items():
                self.preview[name] = (event.z, b)
        elif isinstance(event, MethodBands):
            self.bands[event.method] = event.bands
            self.preview.pop(event.method, None)
        elif isinstance(event, MethodFailed):
            self.errors[event.method] = event.message
            self.preview.pop(event.method, None)

    def finish(self, result: AnalysisResult) -> None:
        self.result = result
        self.bands.update(result.bands)
        self.errors.update(result.errors)
        self.preview.clear()

    @property
    def shown(self) -> list[str]:
        """Methods with bands to display (whole volume or the preview slice), in order."""
        names = set(self.bands) | set(self.preview)
        order = list(NAMES)
        return [m for m in order if m in names] + sorted(names - set(order))

    def snapped(self, method: str, alpha: float) -> float | None:
        b = self.bands.get(method)
        if b is None and method in self.preview:
            b = self.preview[method][1]
        return None if b is None else b.snap(alpha)

    def beta(self, method: str) -> float | None:
        b = self.bands.get(method)
        return None if b is None else b.info.get("beta")

    def numbers(self, method: str, alpha: float, truth: np.ndarray | None = None) -> dict:
        """Band volumes (voxels, mL) at ``alpha``; TPR and inner false positives vs ``truth``."""
        b = self.bands[method]
        inner, outer = b.masks(alpha)
        out: dict[str, float] = {"alpha": b.snap(alpha)}
        spacing = self.spacing_zyx if self.spacing_zyx and len(self.spacing_zyx) == 3 else None
        out.update(band_sizes(inner, outer, spacing))
        if truth is not None:
            fg = np.asarray(truth).reshape(inner.shape) != 0
            fp = int(np.count_nonzero(inner & ~fg))
            out["tpr"] = tpr(outer, fg)
            out["inner_loss"] = inner_loss(inner, fg)
            out["inner_fp_voxels"] = fp
            vol = voxel_volume(spacing)
            if vol is not None:
                out["inner_fp_ml"] = fp * vol / 1000.0
        return out

    def can_sample(self, method: str) -> bool:
        """Whether ``method`` can draw segmentations from its set here (it has ``sample``,
        whole-volume bands and what its draws read: the samples' decomposition or the mean)."""
        m = self.methods.get(method)
        if m is None or not hasattr(m, "sample") or method not in self.bands:
            return False
        res = self.result
        if m.sample_components() is not None:
            return res is not None and (res.decomposition is not None or res.samples is not None)
        return res is not None

    def plausible(self, method: str, alpha: float, n: int = 8, seed: int = 0) -> np.ndarray:
        """``n`` segmentations drawn from ``method``'s set at ``alpha``: ``(n, Z, H, W)`` uint8.

        A method that reads the samples (CONSIGN) draws from each slice's set, built from the
        run's per-slice decomposition on the model grid (or, for a result that holds them, the
        raw samples: the same draws); the others draw from the mean, on the scan's grid.
        """
        if not self.can_sample(method):
            raise ConformalInputError(f"{method.upper()} offers no sampling of its set here")
        m, res = self.methods[method], self.result
        a = self.bands[method].snap(alpha)
        if m.sample_components() is None:
            out = np.zeros((n, *self.shape), dtype=np.uint8)
            for z in range(self.shape[0]):
                sd = (seed + z) if seed is not None else None
                out[:, z] = m.sample(res.mean[z], a, n, seed=sd)
            return out
        source = res.decomposition if res.decomposition is not None else res.samples
        count, unit = slice_units(source)  # the units are the model grid's slices
        draws = np.stack(
            [
                m.sample(unit(z), a, n, seed=(seed + z) if seed is not None else None)
                for z in range(count)
            ],
            axis=1,
        ).astype(np.uint8)
        view = res.view
        if view is None:
            return draws
        return np.stack([view.labels_to_source(d) for d in draws])
