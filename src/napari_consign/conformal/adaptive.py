"""AT and COAT: per-image thresholds from a learned predictor, calibrated by CRC shifts.

Guarantee (COAT paper, Theorem 1; docs/methods.md §4.4): with f_D trained on units disjoint from the
calibration units, and calibration and test units exchangeable, the outer band
``{p >= clip(tau_hat(X) - t', 0, 1)}`` has ``E[FNR] <= alpha``; ``t'`` is the CRC rule on the
nested family of shifted thresholds, so the guarantee holds for any alpha, whatever alpha f_D
was trained for. The inner band ``{p >= max(0, tau_hat(X) + u')}`` gets its own CRC shift on
the inner loss and is nested inside the outer band: ``E[L_in] <= alpha`` over all scans, healthy
ones included, with ``L_in = min(1, FP/|Y|)`` when ``|Y| > 0`` and ``1[inner band non-empty]``
when ``|Y| = 0`` (the CRC loss of ``crc.py``, docs/guarantees.md).

A 3D scan is treated as a stack of 2D units (one predicted threshold per axial slice), matching
2D calibration units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .bands import Bands, feasible_alphas
from .crc import split_empty, stored_dtype, table_lookup
from .crc_rule import StepRiskCurve
from .dataset import SegmentationSet
from .errors import ConformalInputError
from .inputs import check_scores
from .method import AverageRiskMethod, ScanStats
from .options import MethodOptions
from .state_checks import StateError, alpha_rows
from .threshold_inputs import check_predictor_inputs, input_channels, predictor_inputs
from .threshold_losses import (
    fnr_curve,
    inner_fp_curve,
    inner_threshold,
    inner_thresholds,
    outer_thresholds,
    score_dtype,
    threshold_mask,
)
from .threshold_predictor import PredictorConfig, TrainedPredictor
from .threshold_training import train_predictor


@dataclass(frozen=True)
class Shifts:
    """Calibrated shifts at one alpha: outer ``t'`` and the inner infimum ``x*`` (``-inf``
    allowed); thresholds follow from :func:`outer_thresholds` and :func:`inner_thresholds`."""

    outer: float
    inner: float


class AdaptiveThresholds(AverageRiskMethod):
    """Shared machinery of AT and COAT; subclasses fix the training objective."""

    name = "adaptive"
    objective = "coat"
    needs_training = True
    how = "a threshold predicted per slice"

    def __init__(
        self, options: MethodOptions | None = None, config: PredictorConfig | None = None
    ) -> None:
        self.options = options or MethodOptions()
        self.config = config or PredictorConfig(
            objective=self.objective,
            conditioned=self.options.conditioned,
            alpha=self.options.alpha,
            seed=self.options.seed,
            use_variance=self.options.use_variance,
            epochs=self.options.epochs,
            score_space=self.options.score_space,
            temperature=self.options.temperature,
            input_size=self.options.input_size,
        )
        self.predictor: TrainedPredictor | None = None
        self._cal_inputs = None
        self._cal_pairs: list[tuple[np.ndarray, np.ndarray]] = []  # lesion units (outer)
        self._cal_every: list[tuple[np.ndarray, np.ndarray]] = []  # all units (inner)
        self._cal_lesion = np.zeros(0, np.int64)  # indices of the lesion units in _cal_every
        self._shift_cache: dict[float, Shifts] = {}
        self._fixed_curves: tuple[StepRiskCurve, StepRiskCurve] | None = None
        self._dtype = np.dtype(np.float64)  # of the calibration scores; thresholds fit it
        self.n_used = 0
        self.n_empty = 0

    # ----------------------------------------------------------------- declarations
    @property
    def reads_image(self) -> bool:
        """Whether the trained predictor reads the image (besides the score map)."""
        cfg = self.config
        return int(cfg.in_channels) - 1 - int(bool(cfg.use_variance)) >= 1

    @property
    def reads_variance(self) -> bool:
        return bool(self.config.use_variance)

    @property
    def alpha_free(self) -> bool:
        """An alpha-conditioned predictor serves every alpha; a per-alpha one is trained for
        ``options.alpha``."""
        return bool(self.config.conditioned)

    # ----------------------------------------------------------------- training
    def _inputs(self, data: SegmentationSet, check: bool = True) -> object:
        if check:
            has_var = self.config.use_variance and data.samples is not None
            check_predictor_inputs(
                self.config, data.images, has_var, self.name, tuple(data.scores.shape)
            )
        variances = data.foreground_variance() if self.config.use_variance else None
        return predictor_inputs(
            data.scores, data.images, variances, self.config.input_size, self.config.score_space
        )

    def train(
        self,
        train: SegmentationSet,
        progress: Callable[[int, int, float, float], None] | None = None,
        cancel: object | None = None,
    ) -> TrainedPredictor:
        """Train f_D on ``train`` (never the calibration units)."""
        if train is None or len(train) == 0:
            raise ConformalInputError(
                f"{self.name.upper()} needs a training split for its threshold predictor; "
                "give it images that are not used for calibration"
            )
        config = replace(
            self.config, in_channels=input_channels(train.images, self.config.use_variance)
        )
        self.predictor = train_predictor(
            self._inputs(train, check=False),
            train.scores,
            train.masks,
            config,
            self.options.device,
            progress,
            cancel,
        )
        self.config = config
        return self.predictor

    # -------------------------------------------------------------- calibration
    def calibrate(
        self, cal: SegmentationSet, train: SegmentationSet | None = None, *, cancel: object = None
    ) -> None:
        """Train f_D on ``train`` (if not trained yet), then calibrate the shifts on ``cal``."""
        if self.predictor is None:
            self.train(train, cancel=cancel)
        self.fit_shifts(cal)

    def fit_shifts(self, cal: SegmentationSet) -> None:
        """Keep the calibration units; shifts are computed per alpha on demand (cached).

        Units with empty ground truth (healthy scans, counted in ``n_empty``) are left out of
        the outer band's calibration (no FNR); the inner band's uses them with the loss
        ``1[inner set non-empty]``, as CRC does (docs/guarantees.md).
        """
        if self.predictor is None:
            raise RuntimeError("train or load the threshold predictor before calibrating")
        every = [(s, m != 0) for s, m in zip(cal.scores, cal.masks, strict=True)]
        pairs, self.n_empty = split_empty(every)
        self.n_used = len(pairs)
        self._dtype = score_dtype([s for s, _ in every])
        self._cal_pairs = pairs
        self._cal_every = every
        self._cal_lesion = np.flatnonzero([m.any() for _, m in every])
        self._cal_inputs = self._inputs(cal)
        self._shift_cache = {}
        self._fixed_curves = None

    def _curves(self, alpha: float) -> tuple[StepRiskCurve, StepRiskCurve]:
        if self._fixed_curves is not None:
            return self._fixed_curves
        tau_hat = self.predictor.predict(self._cal_inputs, alpha)
        curves = (
            fnr_curve(self._cal_pairs, tau_hat[self._cal_lesion]),
            inner_fp_curve(self._cal_every, tau_hat),  # healthy units too
        )
        if not self.config.conditioned:  # tau_hat does not depend on alpha: build once
            self._fixed_curves = curves
        return curves

    def shifts(self, alpha: float) -> Shifts:
        """Calibrated outer and inner shifts at ``alpha`` (CRC rule, exact)."""
        key = round(float(alpha), 12)
        if key not in self._shift_cache:
            if not self._cal_pairs:
                if self._shift_cache:  # loaded from a bundle: only its alphas exist
                    return table_lookup(self._shift_cache, alpha)
                raise RuntimeError(f"{self.name} is not calibrated: call calibrate() first")
            outer, inner = self._curves(alpha)
            t = max(outer.solve(alpha), -1.0)  # t <= -1 puts every threshold at 1
            self._shift_cache[key] = Shifts(outer=t, inner=inner_threshold(inner, alpha))
        return self._shift_cache[key]

    # --------------------------------------------------------------- prediction
    def thresholds(self, data: SegmentationSet, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit ``(inner, outer)`` thresholds at ``alpha``, inner nested in outer.

        Exact with respect to the calibrated keys and rounded up to the calibration scores'
        dtype (see :func:`~.threshold_losses.outer_thresholds`).
        """
        s = self.shifts(alpha)
        tau_hat = self.predictor.predict(self._inputs(data), alpha)
        tau_out = outer_thresholds(tau_hat, s.outer, self._dtype)
        return np.maximum(inner_thresholds(tau_hat, s.inner, self._dtype), tau_out), tau_out

    def predict_masks(
        self, data: SegmentationSet, alpha: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        tau_in, tau_out = self.thresholds(data, alpha)
        return [
            (threshold_mask(s, ti), threshold_mask(s, to))
            for s, ti, to in zip(data.scores, tau_in, tau_out, strict=True)
        ]

    def bands(self, stats: ScanStats, alphas: Sequence[float] | None = None) -> Bands:
        """Bands of a scan: its score map, and the image and variance if the predictor reads
        them."""
        image = stats.image if self.reads_image else None
        image = None if image is None else np.asarray(image, dtype=np.float32)
        variance = stats.var if self.reads_variance else None
        return self.map_bands(stats.mean, image, variance, alphas)

    def map_bands(
        self,
        score: np.ndarray,
        image: np.ndarray | None = None,
        variance: np.ndarray | None = None,
        alphas: Sequence[float] | None = None,
    ) -> Bands:
        """Bands of one 2D map or a 3D (z, y, x) stack of axial slices.

        Each slice gets its own thresholds per grid alpha; the per-voxel critical-level maps
        are then built slice by slice (``Bands.from_thresholds``).
        """
        score = check_scores(score)
        if score.ndim not in (2, 3):
            raise ConformalInputError(f"{self.name} bands need a 2D or 3D map, got {score.shape}")
        grid = feasible_alphas(self.n_used, alphas)
        if self.config.conditioned:
            lo, hi = self.config.alpha_range
            grid = grid[(grid >= lo - 1e-9) & (grid <= hi + 1e-9)]
            self.predictor.check_alpha(grid)
        stack = score[None] if score.ndim == 2 else score
        img = None if image is None else np.asarray(image)
        img = img[None] if img is not None and score.ndim == 2 else img
        var = None if variance is None else np.asarray(variance)
        var = var[None] if var is not None and score.ndim == 2 else var
        check_predictor_inputs(self.config, img, var is not None, self.name, stack.shape)
        inputs = predictor_inputs(stack, img, var, self.config.input_size, self.config.score_space)
        tau_hat = self.predictor.predict_grid(inputs, grid)  # (G, Z), one forward pass
        shifts = [self.shifts(a) for a in grid]
        taus_out = np.array(
            [
                outer_thresholds(t, sh.outer, self._dtype)
                for t, sh in zip(tau_hat, shifts, strict=True)
            ]
        )
        taus_in = np.array(
            [
                inner_thresholds(t, sh.inner, self._dtype)
                for t, sh in zip(tau_hat, shifts, strict=True)
            ]
        )
        info = {"n_used": self.n_used, "n_empty": self.n_empty}
        slices = [
            Bands.from_thresholds(stack[z], grid, taus_out[:, z], taus_in[:, z], self.name, info)
            for z in range(stack.shape[0])
        ]
        outer_level = np.stack([b.outer_level for b in slices])
        inner_start = np.stack([b.inner_start for b in slices])
        if score.ndim == 2:
            outer_level, inner_start = outer_level[0], inner_start[0]
        return replace(slices[0], outer_level=outer_level, inner_start=inner_start)

    def to_state(self, alphas: Sequence[float] | None = None) -> dict:
        """Settings and calibrated shifts on the alpha grid, for a calibration bundle."""
        grid = feasible_alphas(self.n_used, alphas)
        if self.config.conditioned:
            lo, hi = self.config.alpha_range
            grid = grid[(grid >= lo - 1e-9) & (grid <= hi + 1e-9)]
        return {
            "method": self.name,
            "n_used": self.n_used,
            "n_empty": self.n_empty,
            "score_dtype": self._dtype.name,
            "config": self.config.to_dict(),
            "history": self.predictor.history,
            "shifts": [[float(a), self.shifts(a).outer, self.shifts(a).inner] for a in grid],
        }

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The threshold predictor's weights, as plain arrays."""
        return self.predictor.state_arrays()

    @classmethod
    def from_state(
        cls, state: dict, arrays: dict[str, np.ndarray] | None = None
    ) -> AdaptiveThresholds:
        """A calibrated method that answers for the alphas stored in :meth:`to_state`."""
        config = PredictorConfig.from_dict(state["config"])
        self = cls(config=config)
        self.predictor = TrainedPredictor.from_state_arrays(config, arrays or {})
        self.predictor.history = list(state.get("history", []))
        self.n_used, self.n_empty = int(state["n_used"]), int(state["n_empty"])
        self._dtype = stored_dtype(state)
        self._shift_cache = {round(a, 12): Shifts(t, u) for a, t, u in state["shifts"]}
        return self

    @classmethod
    def check_state(cls, state: dict, arrays: dict[str, np.ndarray]) -> None:
        table = alpha_rows(state.get("shifts"), 3, "shift", int(state["n_used"]))
        if np.isposinf(table[:, 1:]).any():
            raise StateError("the shift table holds +inf")
        if not isinstance(state.get("config"), dict):
            raise StateError("the predictor configuration is missing")
        if not arrays:
            raise StateError("the threshold predictor's weights are missing")
        for name, a in arrays.items():
            if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
                raise StateError(f"predictor weights {name!r} are not finite numbers")

    @classmethod
    def state_levels(cls, state: dict) -> list[float]:
        return [float(r[0]) for r in state["shifts"]]

    def summary(self, alpha: float) -> dict[str, float]:
        s = self.shifts(alpha)
        return {"shift_outer": s.outer, "shift_inner": s.inner}


class COAT(AdaptiveThresholds):
    """COAT: f_D trained with the differentiable miscoverage loss (docs/methods.md §4)."""

    name = "coat"
    label = "COAT"
    objective = "coat"


class AT(AdaptiveThresholds):
    """AT: f_D regresses oracle thresholds with MSE (docs/methods.md §3)."""

    name = "at"
    label = "AT"
    objective = "at"
