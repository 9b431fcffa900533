"""The model card: what a model expects of a scan, stored with its weights and in every bundle.

A card is the ``"card"`` entry of a model's sidecar JSON (``<weights>.json``). It says which
modality the model was trained on, the voxel spacing it expects (scans are resampled to it,
:mod:`napari_consign.resample`), how inputs are normalised and oriented, what it was trained
on, its held-out Dice, and the reference intensity histogram the out-of-distribution check
compares scans with (:mod:`napari_consign.ood`). Models without a card run on the scan's own
grid and get only the checks that need no card.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["CARD_KEY", "IntensityReference", "ModelCard", "card_of"]

#: Key of the card in a model's sidecar JSON and in a bundle header's ``extra``.
CARD_KEY = "card"


@dataclass(frozen=True)
class IntensityReference:
    """Histogram of model-normalised body intensities on the training cases.

    ``edges``: bin edges (ascending); ``histogram``: the reference cases' pooled bin
    probabilities (sum 1); ``threshold``: a scan whose Wasserstein-1 distance to this histogram
    (in normalised intensity units) exceeds it is flagged; ``quantile``: the quantile of the
    reference cases' own distances the threshold was set from, times ``margin``.
    """

    edges: tuple[float, ...]
    histogram: tuple[float, ...]
    threshold: float
    quantile: float = 0.99
    margin: float = 1.0

    def __post_init__(self) -> None:
        if len(self.edges) != len(self.histogram) + 1:
            raise ValueError("an intensity reference needs one more edge than bins")


@dataclass(frozen=True)
class ModelCard:
    """What a model expects (see the module doc). Spacing is ``(z, y, x)`` in mm."""

    modality: str  # DICOM Modality code, e.g. "MR" or "CT"
    sequence: str  # e.g. "T1-weighted"
    spacing_zyx: tuple[float, float, float]
    orientation: str
    normalization: dict
    body_mask: str
    training: str
    test_dice: dict = field(default_factory=dict)
    intensity: IntensityReference | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the inverse of :meth:`from_dict`)."""
        out = asdict(self)
        out["spacing_zyx"] = list(self.spacing_zyx)
        if self.intensity is not None:
            out["intensity"] = {
                **asdict(self.intensity),
                "edges": list(self.intensity.edges),
                "histogram": list(self.intensity.histogram),
            }
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ModelCard:
        """Read a card; raises ``ValueError`` naming the missing or bad field."""
        try:
            spacing = tuple(float(v) for v in d["spacing_zyx"])
            if len(spacing) != 3 or min(spacing) <= 0:
                raise ValueError(f"spacing_zyx must be three positive numbers, got {spacing}")
            ref = d.get("intensity")
            intensity = None
            if ref:
                intensity = IntensityReference(
                    edges=tuple(float(v) for v in ref["edges"]),
                    histogram=tuple(float(v) for v in ref["histogram"]),
                    threshold=float(ref["threshold"]),
                    quantile=float(ref.get("quantile", 0.99)),
                    margin=float(ref.get("margin", 1.0)),
                )
            return cls(
                modality=str(d["modality"]).upper(),
                sequence=str(d.get("sequence", "")),
                spacing_zyx=spacing,  # type: ignore[arg-type]
                orientation=str(d.get("orientation", "")),
                normalization=dict(d.get("normalization", {"kind": "none"})),
                body_mask=str(d.get("body_mask", "")),
                training=str(d.get("training", "")),
                test_dice=dict(d.get("test_dice", {})),
                intensity=intensity,
            )
        except KeyError as exc:
            raise ValueError(f"the model card lacks {exc.args[0]!r}") from None

    def summary(self) -> str:
        """One line for users: modality, spacing and Dice."""
        sp = " x ".join(f"{v:g}" for v in self.spacing_zyx)
        dice = self.test_dice.get("lesion_cases_mc_mean")
        tail = f"; held-out Dice {dice:.2f}" if dice is not None else ""
        return f"{self.modality} {self.sequence}, {sp} mm (z, y, x){tail}".replace("  ", " ")


def card_of(model: Any) -> ModelCard | None:
    """The card of a loaded model (``LoadedModel`` or a ``Sampler`` of one), or None.

    An ensemble has a card only when every member carries the same one.
    """
    members = getattr(model, "models", None)
    if members is None:
        inner = getattr(model, "model", None)
        members = [inner if inner is not None else model]
    cards = []
    for m in members:
        info = getattr(m, "info", None) or {}
        raw = info.get(CARD_KEY)
        if not raw:
            return None
        cards.append(ModelCard.from_dict(raw))
    if not cards or any(c != cards[0] for c in cards[1:]):
        return None
    return cards[0]
