"""CRC: one global threshold per band, exact from sorted breakpoints (docs/methods.md §2).

Guarantee (Angelopoulos et al., ICLR 2024), for exchangeable calibration and test scans:

* outer band ``{p >= tau_out}``: ``E[FNR] <= alpha`` over scans with non-empty ground truth
  (it misses on average at most a fraction alpha of the structure);
* inner band ``{p >= tau_in}``: ``E[L_in] <= alpha`` over all scans, healthy ones included,
  with ``L_in = min(1, FP / |Y|)`` when ``|Y| > 0`` and ``L_in = 1[inner band non-empty]``
  when ``|Y| = 0`` (docs/guarantees.md).

The inner threshold is raised to ``max(tau_in, tau_out)`` so the inner band lies inside the outer
band; raising it only lowers the inner loss, so both guarantees hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .bands import Bands, feasible_alphas
from .crc_rule import StepRiskCurve
from .dataset import SegmentationSet
from .errors import ConformalInputError
from .inputs import Units, check_scores, pair_units
from .method import AverageRiskMethod, ScanStats
from .options import MethodOptions
from .state_checks import alpha_rows, monotone, numbers
from .threshold_losses import (
    fnr_curve,
    inner_fp_curve,
    inner_threshold,
    inner_thresholds,
    outer_thresholds,
    score_dtype,
    threshold_mask,
)


@dataclass(frozen=True)
class Thresholds:
    """Thresholds of the two bands at one alpha: the sets are ``{p >= inner}``/``{p >= outer}``."""

    inner: float
    outer: float


def split_empty(
    pairs: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
    """Drop units whose ground truth is empty; return the rest and how many were dropped."""
    used = [p for p in pairs if p[1].any()]
    if not used:
        raise ConformalInputError(
            f"all {len(pairs)} calibration masks are empty: there is nothing to cover. "
            "Calibrate on scans that contain the structure."
        )
    return used, len(pairs) - len(used)


def stored_dtype(state: dict) -> np.dtype:
    """The calibration scores' dtype a bundle recorded (older bundles: float64, as stored)."""
    name = state.get("score_dtype", "float64")
    if name not in ("float16", "float32", "float64"):
        raise ConformalInputError(f"unsupported score dtype {name!r} in the stored state")
    return np.dtype(name)


def table_lookup(table: dict[float, tuple], alpha: float) -> tuple:
    """The entry of a per-alpha table stored in a bundle; raises for alphas it does not hold."""
    key = round(float(alpha), 12)
    if key not in table:
        held = ", ".join(f"{a:g}" for a in sorted(table))
        raise ConformalInputError(
            f"this calibration holds alpha in {{{held}}}, not {alpha:g}; pick one of those or "
            "recalibrate with the calibration data"
        )
    return table[key]


class CRC(AverageRiskMethod):
    """Conformal risk control with one global threshold per band."""

    name = "crc"
    label = "CRC"
    how = "one threshold for every scan"

    def __init__(self, options: MethodOptions | None = None) -> None:
        self.options = options or MethodOptions()
        self._outer: StepRiskCurve | None = None
        self._inner: StepRiskCurve | None = None
        self._table: dict[float, tuple[float, float]] = {}  # alpha -> (tau_out, raw tau_in)
        self._dtype = np.dtype(np.float64)  # of the calibration scores; thresholds fit it
        self.n_used = 0
        self.n_empty = 0

    def fit(self, scores: Units, masks: Units) -> CRC:
        """Calibrate on probability maps (any dimension) and their ground-truth masks.

        Units with empty ground truth (healthy scans, counted in ``n_empty``) have no FNR and
        are left out of the outer band's calibration; the inner band's uses them with the loss
        ``1[inner set non-empty]`` (docs/guarantees.md). One fit holds both whole risk curves,
        so :meth:`thresholds` is a lookup for any alpha.
        """
        every = pair_units(scores, masks)
        pairs, self.n_empty = split_empty(every)
        self.n_used = len(pairs)
        self._dtype = score_dtype([s for s, _ in every])
        self._outer = fnr_curve(pairs)
        self._inner = inner_fp_curve(every)  # healthy units too: loss 1[inner set non-empty]
        return self

    def calibrate(
        self, cal: SegmentationSet, train: SegmentationSet | None = None, *, cancel: object = None
    ) -> None:
        """Fit on the score maps of a :class:`SegmentationSet` (no training part needed)."""
        self.fit(cal.scores, cal.masks)

    def predict_masks(
        self, data: SegmentationSet, alpha: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(inner, outer)`` masks of every unit of ``data`` at ``alpha``."""
        t = self.thresholds(alpha)
        return [(threshold_mask(s, t.inner), threshold_mask(s, t.outer)) for s in data.scores]

    @property
    def fitted(self) -> bool:
        return self._outer is not None or bool(self._table)

    def _raw_thresholds(self, alpha: float) -> tuple[float, float]:
        if self._outer is not None and self._inner is not None:
            tau_out = float(outer_thresholds(0.0, self._outer.solve(alpha), self._dtype))
            tau_in = float(inner_thresholds(0.0, inner_threshold(self._inner, alpha), self._dtype))
            return tau_out, tau_in
        if not self._table:
            raise RuntimeError("CRC is not calibrated: call fit() first")
        return table_lookup(self._table, alpha)

    def outer_threshold(self, alpha: float) -> float:
        """Largest ``tau`` whose outer set ``{p >= tau}`` meets the FNR bound at ``alpha``."""
        return self._raw_thresholds(alpha)[0]

    def raw_inner_threshold(self, alpha: float) -> float:
        """Smallest ``tau`` (not nested) whose inner set meets the false-positive bound."""
        return self._raw_thresholds(alpha)[1]

    def thresholds(self, alpha: float) -> Thresholds:
        """Both thresholds at ``alpha``, with the inner one nested inside the outer band.

        Each is the smallest value of the calibration scores' dtype that defines the
        calibrated set, so ``score >= threshold`` is exact for maps of that dtype in any
        precision (a float32 map compared with a Python float compares in float32).
        :meth:`predict` and :meth:`predict_masks` are exact for any dtype.
        """
        tau_out = self.outer_threshold(alpha)
        return Thresholds(inner=max(self.raw_inner_threshold(alpha), tau_out), outer=tau_out)

    def predict(self, score: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """``(inner, outer)`` masks of one probability map at ``alpha``."""
        score = check_scores(score)
        t = self.thresholds(alpha)
        return threshold_mask(score, t.inner), threshold_mask(score, t.outer)

    def bands(self, stats: ScanStats, alphas: Sequence[float] | None = None) -> Bands:
        """Bands of the scan's score map (``stats.mean``)."""
        return self.map_bands(stats.mean, alphas)

    def map_bands(self, score: np.ndarray, alphas: Sequence[float] | None = None) -> Bands:
        """Bands of one probability map over the feasible part of the alpha grid."""
        score = check_scores(score)
        grid = feasible_alphas(self.n_used, alphas)
        tau_out = np.array([self.outer_threshold(a) for a in grid])
        tau_in = np.array([self.raw_inner_threshold(a) for a in grid])
        info = {"n_used": self.n_used, "n_empty": self.n_empty}
        return Bands.from_thresholds(score, grid, tau_out, tau_in, self.name, info)

    def to_state(self, alphas: Sequence[float] | None = None) -> dict:
        """What a calibration bundle needs: both thresholds on the feasible alpha grid."""
        grid = feasible_alphas(self.n_used, alphas)
        return {
            "method": self.name,
            "n_used": self.n_used,
            "n_empty": self.n_empty,
            "score_dtype": self._dtype.name,
            "table": [[float(a), *self._raw_thresholds(a)] for a in grid],
        }

    @classmethod
    def from_state(cls, state: dict, arrays: dict[str, np.ndarray] | None = None) -> CRC:
        """A calibrated CRC that answers for the alphas stored in :meth:`to_state`."""
        self = cls()
        self.n_used, self.n_empty = int(state["n_used"]), int(state["n_empty"])
        self._dtype = stored_dtype(state)
        self._table = {round(a, 12): (t_out, t_in) for a, t_out, t_in in state["table"]}
        return self

    def summary(self, alpha: float) -> dict[str, float]:
        """Calibrated quantities at ``alpha`` for reports."""
        t = self.thresholds(alpha)
        return {"tau_outer": t.outer, "tau_inner": t.inner}

    @classmethod
    def check_state(cls, state: dict, arrays: dict[str, np.ndarray]) -> None:
        table = alpha_rows(state.get("table"), 3, "threshold", int(state["n_used"]))
        numbers(table[:, 1], "the outer thresholds", 0.0, 1.0)
        numbers(table[:, 2], "the inner thresholds", 0.0, 1.0 + 1e-6)
        monotone(table[:, 1], True, "the outer thresholds")
        monotone(table[:, 2], False, "the inner thresholds")

    @classmethod
    def state_levels(cls, state: dict) -> list[float]:
        return [float(r[0]) for r in state["table"]]
