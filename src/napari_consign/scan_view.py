"""A scan as the model sees it, and the way its results go back to the scan.

:meth:`ScanView.prepare` takes a scan ``(z, y, x)``, its voxel spacing and modality and the
model's card (:mod:`napari_consign.models.card`) and makes, before any sampling:

* the scan resampled to the card's spacing (:mod:`napari_consign.resample`), which the model
  samples;
* the body masks (:mod:`napari_consign.body_mask`) on both grids, when the card names the rule;
* the out-of-distribution report (:mod:`napari_consign.ood`).

Afterwards it moves bands and maps back to the scan's grid, bounded by the body mask. A model
without a card, or a scan without spacing, is used as it is (the view is then the identity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .body_mask import BODY_RULE, body_mask, restrict_bands
from .models.card import ModelCard
from .ood import OODReport, check_scan
from .resample import ModelGrid, map_bands, plan_grid

__all__ = ["ScanView"]


@dataclass(frozen=True)
class ScanView:
    """See the module doc. ``grid`` None: the model samples the scan's own grid."""

    volume: np.ndarray  # what the model samples (model grid)
    grid: ModelGrid | None
    body_source: np.ndarray | None
    body_model: np.ndarray | None
    report: OODReport

    @classmethod
    def prepare(
        cls,
        volume: np.ndarray,
        card: ModelCard | None,
        spacing_zyx: tuple[float, ...] | None = None,
        modality: str | None = None,
    ) -> ScanView:
        """Resample, mask and check ``volume`` for a model with ``card`` (see the module doc)."""
        volume = np.asarray(volume)
        grid = None
        if card is not None and spacing_zyx is not None and len(spacing_zyx) == 3:
            grid = plan_grid(volume.shape, tuple(spacing_zyx), card.spacing_zyx)
            if grid.identity:
                grid = None
        model_volume = volume if grid is None else grid.to_model(volume)
        body_src = body_mod = None
        if card is not None and card.body_mask == BODY_RULE:
            body_src = body_mask(volume)
            body_mod = body_src if grid is None else body_mask(model_volume)
        notes = () if grid is None else (grid.describe(),)
        report = check_scan(
            model_volume,
            card,
            spacing_zyx=spacing_zyx,
            modality=modality,
            body=body_mod,
            notes=notes,
        )
        return cls(model_volume, grid, body_src, body_mod, report)

    @property
    def resampled(self) -> bool:
        return self.grid is not None

    def model_slice(self, z: int) -> int:
        """The model-grid slice that shows source slice ``z``."""
        return z if self.grid is None else self.grid.model_slice(z)

    def source_slice(self, z: int) -> int:
        """The source slice shown by model-grid slice ``z``."""
        return z if self.grid is None else self.grid.source_slice(z)

    def scores(self, mean: np.ndarray, z: int | None = None) -> np.ndarray:
        """Model-grid scores with the body rule applied (all slices, or model slice ``z``)."""
        if self.body_model is None:
            return mean
        body = self.body_model if z is None else self.body_model[z : z + 1]
        return np.where(body, mean, np.zeros((), dtype=mean.dtype))

    def bands_to_source(self, bands):
        """Whole-volume bands on the source grid, bounded by the body mask."""
        if self.grid is not None:
            bands = map_bands(bands, self.grid.to_source)
        return bands if self.body_source is None else restrict_bands(bands, self.body_source)

    def slice_bands_to_source(self, bands, z_source: int):
        """One model slice's bands ``(1, h, w)`` on source slice ``z_source`` ``(1, H, W)``."""
        if self.grid is not None:
            bands = map_bands(bands, self.grid.plane().to_source)
        if self.body_source is None:
            return bands
        return restrict_bands(bands, self.body_source[z_source : z_source + 1])

    def map_to_source(self, arr: np.ndarray) -> np.ndarray:
        """A model-grid map (mean, variance) on the source grid (linear)."""
        return arr if self.grid is None else self.grid.to_source(arr)

    def labels_to_source(self, labels: np.ndarray) -> np.ndarray:
        """Model-grid labels on the source grid (nearest neighbour), bounded by the body."""
        out = labels if self.grid is None else self.grid.to_source_labels(labels)
        if self.body_source is not None:
            out = np.where(self.body_source, out, np.zeros((), dtype=out.dtype))
        return out
