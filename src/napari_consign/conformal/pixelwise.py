"""Pixel-wise APS baseline, calibrated with CONSIGN's beta-loss (docs/methods.md §6).

Input: the mean softmax over the ``N_s`` samples. Per pixel, labels are sorted by probability
(descending, stable: ties keep the lower label first) with cumulative sums ``S_1 <= ... <= S_L``;
the set holds the top ``m = min{j : S_j > lam}`` labels (all labels if no ``S_j > lam``). So
label ``l`` is in the set iff its *key*, the probability mass ranked above it, is ``<= lam``
(keys are clipped to 1, so ``lam = 1`` keeps every label).

Loss: ``1 - covered``, covered iff the macro recall over the ground-truth labels of
``{p : Y_p in C_p}`` is ``> beta``. Sets grow with ``lam``, so each image's ``lambda_i*`` (the
smallest grid value ``0, 0.01, ..., 1`` that covers it) is exact, and lambda-hat is the CRC rule
on the keys ``lambda_i*`` (the ``ceil((n+1)(1-alpha))``-th smallest).

Guarantee: for exchangeable calibration and test images with a non-background label in the
ground truth, ``P[test image covered at lambda-hat] >= 1 - alpha``. lambda-hat falls as alpha
grows, so the sets are nested in alpha and :meth:`PixelwiseAPS.bands` are per-pixel level maps:
outer = "a non-background label is in the set", inner = "background is not in the set" (binary:
outer iff fg is top-ranked or ``p_(1) <= lam``; inner iff fg is top-ranked and ``p_fg > lam``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .bands import DEFAULT_ALPHAS, Bands, ThresholdBands, feasible_alphas
from .crc_rule import StepRiskCurve, check_alpha
from .dataset import SegmentationSet
from .errors import ConformalInputError
from .inputs import check_labels, check_scores
from .method import ScanStats, SetCoverageMethod, percent
from .options import MethodOptions
from .set_metrics import SCORE_TOLERANCE, beta_equal, beta_scores, chao1, check_beta, mean_pearson
from .state_checks import lambda_tables

#: Calibration grid of lambda: 0, 0.01, ..., 1 (1 keeps every label).
LAMBDA_GRID = np.arange(101) / 100.0


def class_probabilities(probabilities: np.ndarray, binary: bool) -> np.ndarray:
    """``(L, ...)`` float64 class probabilities; binary maps ``p`` become ``[1 - p, p]``."""
    p = np.asarray(probabilities, dtype=np.float64)
    return np.stack([1.0 - p, p]) if binary else p


def aps_keys(probs: np.ndarray) -> np.ndarray:
    """Per label and pixel, the probability mass ranked above it (``(L, ...)``, clipped to 1).

    Label ``l`` is in the APS set at ``lam`` iff ``key[l] <= lam``.
    """
    probs = np.asarray(probs, dtype=np.float64)
    order = np.argsort(-probs, axis=0, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=0)
    above = np.concatenate([np.zeros_like(ranked[:1]), np.cumsum(ranked, axis=0)[:-1]])
    keys = np.empty_like(probs)
    np.put_along_axis(keys, order, np.minimum(above, 1.0), axis=0)
    return keys


def unit_lambda_star(keys: np.ndarray, truth: np.ndarray, beta: float) -> float:
    """Smallest grid lambda whose APS sets cover ``truth`` (beta-score ``> beta``)."""
    truth = np.asarray(truth).reshape(-1)
    flat = keys.reshape(keys.shape[0], -1)
    key_truth = flat[truth, np.arange(truth.size)]
    level = np.searchsorted(LAMBDA_GRID, key_truth, side="left")  # first grid lam >= key
    score = np.zeros(LAMBDA_GRID.size)
    labels = np.unique(truth)
    for label in labels:
        where = truth == label
        hits = np.cumsum(np.bincount(level[where], minlength=LAMBDA_GRID.size))
        score += hits / np.count_nonzero(where)
    score /= labels.size
    return float(LAMBDA_GRID[np.argmax(score > beta + SCORE_TOLERANCE)])


class PixelwiseAPS(SetCoverageMethod):
    """Pixel-wise APS sets calibrated with the beta-loss (``MethodOptions.beta``)."""

    name = "pixelwise"
    label = "Pixel-wise"
    reads_samples = True  # the mean of the samples in float64 (class probabilities if L > 2)

    def __init__(
        self,
        options: MethodOptions | None = None,
        *,
        alphas: Sequence[float] | None = None,
        metric_samples: int = 100,
    ) -> None:
        self.options = options or MethodOptions()
        self.beta = check_beta(self.options.beta)
        self.alphas = alphas
        self.metric_samples = int(metric_samples)
        self.n_used = 0
        self.n_empty = 0
        self.n_classes = 2
        self._binary = True
        self._stars: np.ndarray | None = None

    @property
    def alpha_grid(self) -> np.ndarray:
        return DEFAULT_ALPHAS if self.alphas is None else np.asarray(self.alphas, np.float64)

    @classmethod
    def guarantee_text(cls, alpha: float, beta: float | None = None) -> str:
        return (
            f"{cls.label}: for at least {percent(1.0 - float(alpha))} of scans, at least "
            f"{percent(beta if beta is not None else 0.9)} of each label's pixels have their "
            "true label inside their pixel's set."
        )

    def fit(self, probabilities: np.ndarray, masks: np.ndarray) -> PixelwiseAPS:
        """Calibrate on mean probabilities and label masks.

        ``probabilities``: ``(n, H, W)`` foreground probabilities (binary, same shape as
        ``masks``) or ``(n, L, H, W)`` class probabilities. Empty ground truths are excluded
        and counted in ``n_empty``.
        """
        probabilities = check_scores(probabilities, "mean probabilities")
        masks = np.asarray(masks)
        self._binary = probabilities.shape == masks.shape
        if not self._binary and (
            probabilities.ndim != masks.ndim + 1
            or probabilities.shape[:1] + probabilities.shape[2:] != masks.shape
        ):
            raise ConformalInputError(
                f"probabilities {probabilities.shape} do not match masks {masks.shape}: expected "
                "(n, H, W) foreground or (n, L, H, W) class probabilities for (n, H, W) masks"
            )
        self.n_classes = 2 if self._binary else int(probabilities.shape[1])
        masks = check_labels(masks, self.n_classes, "probabilities")
        used = masks.reshape(len(masks), -1).any(axis=1)
        self.n_used, self.n_empty = int(used.sum()), int((~used).sum())
        if not self.n_used:
            raise ConformalInputError(
                f"all {len(masks)} calibration masks are empty: there is nothing to cover. "
                "Calibrate on images that contain the structure."
            )
        self._stars = np.array(
            [
                unit_lambda_star(self.keys(probabilities[i]), masks[i], self.beta)
                for i in np.flatnonzero(used)
            ]
        )
        return self

    def calibrate(
        self, cal: SegmentationSet, train: SegmentationSet | None = None, *, cancel: object = None
    ) -> None:
        """Fit on the MC-mean probabilities of a :class:`SegmentationSet`."""
        self.fit(mean_probabilities(cal), cal.masks)

    def keys(self, probabilities: np.ndarray) -> np.ndarray:
        """APS keys ``(L, ...)`` of one image's mean probabilities."""
        return aps_keys(class_probabilities(probabilities, self._binary))

    @property
    def lambda_stars(self) -> np.ndarray:
        if self._stars is None:
            raise RuntimeError("PixelwiseAPS is not calibrated: call fit() or calibrate() first")
        return self._stars

    def lambda_hat(self, alpha: float) -> float:
        """CRC rule on the per-image ``lambda_i*`` (raises if alpha is too small for n)."""
        stars = self.lambda_stars
        n = stars.size
        return StepRiskCurve.from_keys(stars, np.full(n, 1.0 / n), n).solve(check_alpha(alpha))

    def sets(self, probabilities: np.ndarray, alpha: float) -> np.ndarray:
        """Boolean ``(L, ...)``: label ``l`` is in the APS set of the pixel at ``alpha``."""
        return self.keys(probabilities) <= self.lambda_hat(alpha)

    def predict(self, probabilities: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """``(inner, outer)``: background not in the set / a non-background label in the set."""
        sets = self.sets(probabilities, alpha)
        return ~sets[0], sets[1:].any(axis=0)

    def bands(self, stats: ScanStats, alphas: Sequence[float] | None = None) -> Bands:
        """Bands of the scan's mean foreground probabilities (``stats.mean``)."""
        return self.map_bands(stats.mean, alphas)

    def map_bands(self, probabilities: np.ndarray, alphas: Sequence[float] | None = None) -> Bands:
        """Level-map bands over the feasible alpha grid (nested in alpha)."""
        grid = feasible_alphas(self.n_used, self.alphas if alphas is None else alphas)
        lams = np.array([self.lambda_hat(a) for a in grid])  # non-increasing in alpha
        keys = self.keys(probabilities)
        ascending = -lams
        outer_key = keys[1:].min(axis=0)
        outer_level = np.searchsorted(ascending, -outer_key, side="right").astype(np.uint8)
        inner_start = np.searchsorted(ascending, -keys[0], side="right").astype(np.uint8)
        info = {
            "lambda_hat": {float(a): float(v) for a, v in zip(grid, lams, strict=True)},
            "beta": self.beta,
            "n_used": self.n_used,
            "n_empty": self.n_empty,
        }
        return ThresholdBands(grid, self.name, info, outer_level, inner_start)

    def sample(
        self, probabilities: np.ndarray, alpha: float, n: int, seed: int | None = None
    ) -> np.ndarray:
        """``n`` segmentations: each pixel draws a label uniformly from its set."""
        keys = self.keys(probabilities)
        return _sample_sets(keys, self.lambda_hat(alpha), n, self._rng(seed))[0]

    def _rng(self, seed: int | Sequence[int] | None) -> np.random.Generator:
        return np.random.default_rng(self.options.seed if seed is None else seed)

    # -- evaluation ------------------------------------------------------------------------

    def predict_masks(
        self, data: SegmentationSet, alpha: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self.predict(p, alpha) for p in mean_probabilities(data)]

    def to_state(self, alphas: Sequence[float] | None = None) -> dict:
        """What a calibration bundle needs: settings and the per-image ``lambda_i*``."""
        if self._stars is None:
            raise RuntimeError("the pixel-wise baseline is not calibrated: call fit() first")
        return {
            "method": self.name,
            "beta": self.beta,
            "n_classes": self.n_classes,
            "binary": self._binary,
            "n_used": self.n_used,
            "n_empty": self.n_empty,
            "lambda_stars": self._stars.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict, arrays: dict[str, np.ndarray] | None = None) -> PixelwiseAPS:
        """A calibrated baseline rebuilt from :meth:`to_state` (any alpha: lambda-hat is exact)."""
        self = cls(MethodOptions(beta=state["beta"]))
        self.n_classes, self._binary = int(state["n_classes"]), bool(state["binary"])
        self.n_used, self.n_empty = int(state["n_used"]), int(state["n_empty"])
        self._stars = np.asarray(state["lambda_stars"], dtype=np.float64)
        return self

    @classmethod
    def check_state(cls, state: dict, arrays: dict[str, np.ndarray]) -> None:
        lambda_tables(state, int(state["n_used"]))

    def summary(self, alpha: float) -> dict[str, float]:
        lam = self.lambda_hat(alpha)
        return {"lambda_hat": lam, "cal_certified": float(np.mean(self.lambda_stars <= lam))}

    def test_metrics(self, test: SegmentationSet, alpha: float) -> dict[str, float]:
        """Exact set coverage, and sEC / Chao1 / mean correlation from sampled segmentations."""
        lam = self.lambda_hat(alpha)
        masks = check_labels(test.masks, self.n_classes, "probabilities")
        probs = mean_probabilities(test)
        covered, hits, sizes, corrs = [], [], [], []
        n = self.metric_samples
        for j in np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1)):
            keys = self.keys(probs[j])
            covered.append(unit_lambda_star(keys, masks[j], self.beta) <= lam)
            drawn, uncertain = _sample_sets(keys, lam, n, self._rng((self.options.seed, 3, j)))
            hits.append(bool(np.any(beta_equal(beta_scores(masks[j], drawn), self.beta))))
            sizes.append(chao1(drawn, uncertain))
            corrs.append(mean_pearson(drawn, uncertain))
        if not covered:
            return {"set_coverage": float("nan")}
        return {
            "set_coverage": float(np.mean(covered)),
            f"sEC_{n}": float(np.mean(hits)),
            f"chao1_{n}": float(np.mean(sizes)),
            f"corr_{n}": float(np.mean(corrs)),
        }


def mean_probabilities(data: SegmentationSet) -> np.ndarray:
    """MC-mean probabilities: ``(n, H, W)`` foreground (binary) or ``(n, L, H, W)``."""
    if data.samples is None:
        return np.asarray(data.scores, dtype=np.float64)
    return np.clip(data.samples.mean(axis=1, dtype=np.float64), 0.0, 1.0)


def _sample_sets(
    keys: np.ndarray, lam: float, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``(n, ...)`` (each pixel uniform over its set) and the uncertain pixels."""
    flat = keys.reshape(keys.shape[0], -1)
    order = np.argsort(flat, axis=0, kind="stable")  # set = first ``size`` labels by key
    size = np.count_nonzero(flat <= lam, axis=0)
    pick = np.minimum((rng.uniform(size=(n, size.size)) * size).astype(np.int64), size - 1)
    labels = np.take_along_axis(order, pick, axis=0) if n else pick
    shape = keys.shape[1:]
    dtype = np.uint8 if keys.shape[0] <= 256 else np.int32
    return labels.reshape(n, *shape).astype(dtype), (size > 1).reshape(shape)
