"""Out-of-distribution checks of a scan against the model card, run before sampling.

The guarantees hold for scans exchangeable with the calibration scans. These checks catch the
common ways a scan is plainly not like them; each gives a :class:`ScanCheck`, and a failed
check turns the guarantee sentence into a caution (:func:`guarantee_caveat`):

* **modality**: the scan's modality (DICOM tag 0008,0060, or the user's choice) differs from
  the card's. Unknown modality (NIfTI without a choice) is not a failure; the intensity check
  still runs.
* **spacing**: along some axis the scan's voxel size and the card's differ by more than
  ``SPACING_RATIO`` times (either way). Smaller differences are resampled away
  (:mod:`napari_consign.resample`) and only noted.
* **intensity**: the histogram of the model-normalised intensities inside the body mask
  (each axial slice divided by its 99.5th percentile and clipped to [0, 2], as the model sees
  it), compared with the training cases' pooled histogram by the Wasserstein-1 distance
  ``W1 = sum_k |F_scan(k) - F_ref(k)| * width_k`` (F: cumulative histograms on the card's
  bins). The reference is the pooled histogram of the shipped ``threshold`` cases (the scans
  the bundles are calibrated for, independent of the calibration and test cases); the
  threshold, stored in the card, is the 99th percentile of those cases' own single-slice
  distances to it. A scan pools many slices, so a scan like them sits well inside (the demo
  scan: 0.02 against a threshold of about 0.15).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .models.card import IntensityReference, ModelCard

__all__ = [
    "SPACING_RATIO",
    "OODReport",
    "ScanCheck",
    "build_intensity_reference",
    "check_scan",
    "guarantee_caveat",
    "intensity_distance",
    "normalised_histogram",
]

#: Largest accepted ratio between the scan's and the card's voxel size along any axis.
SPACING_RATIO = 2.5


@dataclass(frozen=True)
class ScanCheck:
    """One check: ``ok`` True (passed), False (failed) or None (could not be checked)."""

    name: str
    ok: bool | None
    message: str
    value: float | None = None
    limit: float | None = None


@dataclass(frozen=True)
class OODReport:
    """The checks of one scan; ``notes`` are facts that are not failures (e.g. resampling)."""

    checks: tuple[ScanCheck, ...]
    notes: tuple[str, ...] = ()
    card_summary: str = ""

    @property
    def warnings(self) -> tuple[str, ...]:
        """Messages of the failed checks (empty when the scan looks like the training data)."""
        return tuple(c.message for c in self.checks if c.ok is False)

    @property
    def ok(self) -> bool:
        return not self.warnings

    def check(self, name: str) -> ScanCheck | None:
        return next((c for c in self.checks if c.name == name), None)


def normalised_histogram(
    volume: np.ndarray, body: np.ndarray, edges: np.ndarray, upper: float = 99.5
) -> np.ndarray:
    """Bin probabilities of the per-slice percentile-normalised intensities inside ``body``.

    ``volume`` and ``body`` are ``(z, y, x)`` or ``(y, x)``; slices without body are skipped.
    """
    vol = np.asarray(volume, dtype=np.float32)
    mask = np.asarray(body, bool)
    if vol.ndim == 2:
        vol, mask = vol[None], mask[None]
    counts = np.zeros(len(edges) - 1)
    for sl, m in zip(vol, mask, strict=True):
        if not m.any():
            continue
        q = float(np.percentile(sl, upper))
        x = np.clip(sl[m] / (q if q > 0 else 1.0), edges[0], edges[-1])
        counts += np.histogram(x, bins=edges)[0]
    total = counts.sum()
    return counts / total if total > 0 else counts


def intensity_distance(hist: np.ndarray, ref: IntensityReference) -> float:
    """Wasserstein-1 distance between two histograms on the reference's bins."""
    edges = np.asarray(ref.edges)
    cdf_a = np.cumsum(hist)
    cdf_b = np.cumsum(np.asarray(ref.histogram))
    return float(np.sum(np.abs(cdf_a - cdf_b)[:-1] * np.diff(edges)[:-1]))


def _spacing_check(spacing: tuple[float, ...] | None, card: ModelCard) -> ScanCheck:
    if spacing is None or len(spacing) != 3:
        return ScanCheck("spacing", None, "voxel spacing unknown: the scan is used as it is")
    ratios = [max(s / c, c / s) for s, c in zip(spacing, card.spacing_zyx, strict=True)]
    worst = int(np.argmax(ratios))
    sp = " x ".join(f"{s:g}" for s in spacing)
    want = " x ".join(f"{s:g}" for s in card.spacing_zyx)
    if ratios[worst] > SPACING_RATIO:
        axis = "zyx"[worst]
        return ScanCheck(
            "spacing",
            False,
            f"voxel size {sp} mm is {ratios[worst]:.1f}x the model's {want} mm along {axis} "
            f"(more than {SPACING_RATIO:g}x): resampling cannot make it look like the training "
            "scans",
            ratios[worst],
            SPACING_RATIO,
        )
    return ScanCheck("spacing", True, f"voxel size {sp} mm (model: {want} mm)", ratios[worst])


def _modality_check(modality: str | None, card: ModelCard) -> ScanCheck:
    if not modality:
        return ScanCheck("modality", None, f"modality unknown (model: {card.modality})")
    if modality.strip().upper() != card.modality:
        return ScanCheck(
            "modality",
            False,
            f"the scan is {modality.strip().upper()}, the model was trained on "
            f"{card.modality} {card.sequence}".rstrip(),
        )
    return ScanCheck("modality", True, f"modality {card.modality}")


def _intensity_check(volume: np.ndarray, body: np.ndarray, card: ModelCard) -> ScanCheck:
    ref = card.intensity
    if ref is None:
        return ScanCheck("intensity", None, "the model card has no intensity reference")
    if not np.asarray(body).any():
        return ScanCheck("intensity", False, "no foreground found: the scan looks empty")
    upper = float(card.normalization.get("upper", 99.5))
    hist = normalised_histogram(volume, body, np.asarray(ref.edges), upper)
    d = intensity_distance(hist, ref)
    if d > ref.threshold:
        return ScanCheck(
            "intensity",
            False,
            f"intensity histogram far from the training scans (Wasserstein distance {d:.3f} > "
            f"{ref.threshold:.3f}): another contrast or modality?",
            d,
            ref.threshold,
        )
    return ScanCheck("intensity", True, f"intensity histogram distance {d:.3f}", d, ref.threshold)


def check_scan(
    volume: np.ndarray,
    card: ModelCard | None,
    *,
    spacing_zyx: tuple[float, ...] | None = None,
    modality: str | None = None,
    body: np.ndarray | None = None,
    notes: tuple[str, ...] = (),
) -> OODReport:
    """All checks of ``volume`` (on the grid the model sees, with its ``body`` mask)."""
    if card is None:
        return OODReport(
            (ScanCheck("card", None, "this model has no model card: no scan checks"),), notes
        )
    if body is None:
        from .body_mask import body_mask

        body = body_mask(volume)
    checks = (
        _modality_check(modality, card),
        _spacing_check(spacing_zyx, card),
        _intensity_check(volume, body, card),
    )
    return OODReport(checks, notes, card.summary())


def guarantee_caveat(report: OODReport | None, calibration: str = "the calibration scans") -> str:
    """The sentence to show beside the guarantee: its scope, or a caution when a check failed."""
    if report is None:
        return f"The guarantee holds on average over scans like {calibration}."
    like = f" ({report.card_summary})" if report.card_summary else ""
    if report.ok:
        return f"The guarantee holds on average over scans like {calibration}{like}."
    reasons = "; ".join(report.warnings)
    return (
        f"Caution: this scan does not look like {calibration}{like}: {reasons}. The guarantee "
        "assumes such scans and may not hold here."
    )


def build_intensity_reference(
    images, upper: float = 99.5, bins: int = 40, quantile: float = 0.99, margin: float = 1.0
) -> IntensityReference:
    """The card's intensity reference from reference images (2D slices or volumes).

    Pools every image's body-mask histogram (bins of width 2/``bins`` on [0, 2]); the threshold
    is ``margin`` x the ``quantile`` of the images' own distances to the pooled histogram.
    """
    from .body_mask import body_mask

    edges = np.linspace(0.0, 2.0, bins + 1)
    hists, weights = [], []
    for img in images:
        body = body_mask(img)
        hists.append(normalised_histogram(img, body, edges, upper))
        weights.append(int(body.sum()))
    hists_arr = np.asarray(hists)
    pooled = (hists_arr * np.asarray(weights, float)[:, None]).sum(0)
    pooled /= pooled.sum()
    ref = IntensityReference(tuple(edges.tolist()), tuple(pooled.tolist()), 0.0, quantile, margin)
    dists = [intensity_distance(h, ref) for h in hists_arr]
    threshold = margin * float(np.quantile(dists, quantile))
    return IntensityReference(ref.edges, ref.histogram, round(threshold, 4), quantile, margin)
