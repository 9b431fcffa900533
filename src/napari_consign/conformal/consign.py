"""CONSIGN: conformal segmentation sets informed by spatial groupings via decomposition.

Viti, Karabelas, Holler (ICLR 2026), re-implemented from docs/methods.md §5. Per image, the ``N_s``
Monte-Carlo samples are decomposed (top-``K`` principal components, :mod:`.consign_decomposition`);
the set at level ``lam`` is every segmentation beta-equal (macro recall over the ground-truth
labels ``> beta``) to some ``P(mu + U_K c)`` with ``c`` in a box scaled by ``lam``.

Guarantee (Lemma 1 of the paper, via CRC with 0/1 losses): for calibration and test images
that are exchangeable and have a non-background label in the ground truth,

    P[Y_test in C_lambda_hat(X_test)] >= 1 - alpha,

where membership is certified by a witness: a coefficient vector in the box whose prediction
passes the hard beta-check, found by the search of :mod:`.consign_membership` (so the true set is
at least as large and keeps the guarantee). Each image's ``lambda_i*`` is the smallest grid
lambda whose box holds a witness the search found; "member at lam" means ``lambda_i* <= lam``,
monotone in lambda by construction, and lambda-hat is the ``ceil((n+1)(1-alpha))``-th smallest
``lambda_i*`` (:mod:`.consign_calibration`), exact about that membership. Test images are
judged by the same procedure (:meth:`CONSIGN.contains`).

``alpha`` enters twice (quantile levels and lambda-hat), so each ``alpha`` has its own
calibration and sets are not nested in alpha: :meth:`CONSIGN.bands` holds one mask pair
per grid level and the slider snaps to the grid.

The masks of :meth:`CONSIGN.bands` / :meth:`CONSIGN.predict_masks` are the **CONSIGN
envelope** (union / intersection of the foreground over the box, :mod:`.consign_envelope`): a
visual summary, *not* a conformal set.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from .bands import Bands, feasible_alphas
from .consign_calibration import (
    LAMBDA_MAX,
    LAMBDA_STEP,
    LambdaMaxError,
    WitnessLevels,
    lambda_hat_from_stars,
    order_statistic_rank,
    search_lambda_stars,
)
from .consign_decomposition import (
    Decomposition,
    DecompositionStack,
    box_centre_and_radius,
    check_k,
    decompose_stack,
    decompose_units,
    slice_units,
)
from .consign_envelope import envelope, label_envelopes, sample_labels
from .consign_evaluation import ConsignEvaluation
from .consign_membership import MembershipChecker
from .consign_search_settings import SearchSettings
from .consign_state import ConsignState
from .crc_rule import check_alpha
from .dataset import SegmentationSet
from .device import resolve_device
from .errors import ConformalInputError
from .inputs import check_labels
from .method import ENVELOPE_NOTE as ENVELOPE_WORDS
from .method import ScanStats, SetCoverageMethod, percent
from .options import MethodOptions
from .set_metrics import check_beta

#: CONSIGN's alpha grid for the slider: 0.05, 0.10, ..., 0.50 (each level is a calibration).
CONSIGN_ALPHAS = np.round(np.arange(1, 11) * 0.05, 2)

ENVELOPE_NOTE = (
    "CONSIGN envelope: union (outer) and intersection (inner) of the foreground over the "
    "calibrated box; a visual summary, not a conformal set"
)


class CONSIGN(ConsignEvaluation, ConsignState, SetCoverageMethod):
    """CONSIGN spatial conformal sets (``MethodOptions``: ``beta``, ``k``, ``seed``, ``device``).

    Keyword settings: ``alphas`` (the slider grid, default :data:`CONSIGN_ALPHAS`), ``search``
    (:class:`SearchSettings` of the membership check), ``lam_step``/``lam_max`` (lambda grid),
    ``metric_samples`` (box samples per test image for sEC, Chao1, correlation).
    """

    name = "consign"
    label = "CONSIGN"
    reads_samples = True
    envelope = True

    def __init__(
        self,
        options: MethodOptions | None = None,
        *,
        alphas: Sequence[float] | None = None,
        search: SearchSettings | None = None,
        lam_step: float = LAMBDA_STEP,
        lam_max: float = LAMBDA_MAX,
        metric_samples: int = 100,
    ) -> None:
        self.options = options or MethodOptions()
        self.beta = check_beta(self.options.beta)
        if int(self.options.k) != self.options.k or self.options.k < 1:
            raise ConformalInputError(f"K must be a positive integer, got {self.options.k}")
        self.k = int(self.options.k)
        self.device = resolve_device(self.options.device, float64=True)
        self.alphas = np.asarray(CONSIGN_ALPHAS if alphas is None else alphas, dtype=np.float64)
        self.search = search or SearchSettings()
        self.lam_step, self.lam_max = float(lam_step), float(lam_max)
        self.metric_samples = int(metric_samples)
        self.n_used = 0
        self.n_empty = 0
        self.n_classes = 2
        self._binary = True
        self._checker: MembershipChecker | None = None
        self._coeffs = np.zeros((0, 0, 0))
        self._sing = np.zeros((0, 0))
        self._stars: dict[float, np.ndarray] = {}
        self._seconds: dict[float, float] = {}
        self._fit_seconds = 0.0

    # -- declarations ----------------------------------------------------------------------

    @property
    def alpha_grid(self) -> np.ndarray:
        return self.alphas

    @property
    def alpha_free(self) -> bool:
        """Each alpha has its own calibration (quantile levels and lambda-hat)."""
        return False

    def sample_components(self) -> int | None:
        return self.k

    def check_samples(self, n_samples: int) -> None:
        check_k(self.k, n_samples)

    @classmethod
    def guarantee_text(cls, alpha: float, beta: float | None = None) -> str:
        return (
            f"{cls.label}: the true segmentation lies in the set for at least "
            f"{percent(1.0 - float(alpha))} of scans (matching at least "
            f"{percent(beta if beta is not None else 0.9)} of each label). " + ENVELOPE_WORDS
        )

    # -- calibration -----------------------------------------------------------------------

    def fit(
        self,
        samples: np.ndarray | DecompositionStack,
        masks: np.ndarray,
        binary: bool | None = None,
    ) -> CONSIGN:
        """Decompose the calibration images and prepare their membership checks.

        ``samples``: ``(n, N_s, H, W)`` foreground probabilities or ``(n, N_s, L, H, W)`` class
        probabilities, or their :class:`DecompositionStack` (e.g. streamed by the sampler's
        ``TopK`` reducer; the same calibration as from the samples). ``masks``: ``(n, H, W)``
        labels. ``binary`` (default: ``samples.ndim == 4``) says whether axis 2 is spatial
        (foreground probabilities) or the label axis; pass it for other numbers of spatial
        axes, e.g. ``binary=True`` for ``(n, N_s, Z, Y, X)``. Images whose ground truth has no
        non-background label are excluded and counted in ``n_empty``. Only the float32 mean and
        top-``K`` components of each image are kept. Everything alpha-specific is computed on
        first use and cached (:meth:`lambda_stars`).
        """
        t0 = time.perf_counter()
        if isinstance(samples, DecompositionStack):
            stack = self._check_stack(samples)
            self._binary, self.n_classes = stack.binary, stack.n_classes
            n, spatial = len(stack), stack.spatial
        else:
            samples = np.asarray(samples)
            if samples.ndim < 3:
                raise ConformalInputError(
                    f"samples have shape {samples.shape}: expected (n, N_s, H, W) or "
                    "(n, N_s, L, H, W)"
                )
            self._binary = samples.ndim == 4 if binary is None else bool(binary)
            self.n_classes = 2 if self._binary else int(samples.shape[2])
            spatial = samples.shape[2:] if self._binary else samples.shape[3:]
            check_k(self.k, samples.shape[1])
            n = samples.shape[0]
        masks = np.asarray(masks)
        if masks.shape != (n, *spatial):
            raise ConformalInputError(
                f"masks have shape {masks.shape}, expected {(n, *spatial)}: "
                "one label map per image, on the samples' grid"
            )
        masks = check_labels(masks, self.n_classes)
        used = masks.reshape(masks.shape[0], -1).any(axis=1)
        self.n_empty = int(np.count_nonzero(~used))
        self.n_used = int(np.count_nonzero(used))
        if self.n_used == 0:
            raise ConformalInputError(
                f"all {masks.shape[0]} calibration masks are empty: there is nothing to cover. "
                "Calibrate on images that contain the structure."
            )
        index = np.flatnonzero(used)
        if isinstance(samples, DecompositionStack):
            stack = samples.select(index)
        else:
            stack = decompose_stack(samples[index], self.k, self._binary)
        self._coeffs = np.array(stack.coefficients)
        self._sing = np.array(stack.singular)
        # The checker holds the only copy of the float32 means and top-K components.
        self._checker = self._make_checker(stack.units(), masks[index], stream=0)
        self._stars, self._seconds = {}, {}
        self._fit_seconds = time.perf_counter() - t0
        return self

    def _check_stack(self, stack: DecompositionStack) -> DecompositionStack:
        if stack.k != self.k:
            raise ConformalInputError(
                f"the decomposition keeps K = {stack.k} components but this CONSIGN uses "
                f"K = {self.k}; decompose with K = {self.k}"
            )
        return stack

    def calibrate(
        self, cal: SegmentationSet, train: SegmentationSet | None = None, *, cancel: object = None
    ) -> None:
        """Fit on a :class:`SegmentationSet` (no training part needed)."""
        if cal.samples is None:
            raise ConformalInputError("CONSIGN needs the Monte-Carlo samples, not only scores")
        self.fit(cal.samples, cal.masks)

    def calibrate_stats(
        self,
        cal: ScanStats,
        masks: np.ndarray,
        train: SegmentationSet | None = None,
        *,
        cancel: object = None,
    ) -> None:
        """Fit on the units' samples or their streamed ``DecompositionStack`` (``cal.samples``)."""
        if cal.samples is None:
            raise ConformalInputError("CONSIGN needs the Monte-Carlo samples, not only scores")
        self.fit(cal.samples, masks)

    def finish_calibration(self, progress: Callable[[int, int], None] | None = None) -> int:
        """lambda-hat at every feasible level of the grid (slow: membership searches)."""
        self.calibrate_alphas(progress=progress)
        return len(self.alphas)

    def _make_checker(
        self, decomps: list[Decomposition], masks: np.ndarray, stream: int
    ) -> MembershipChecker:
        seeds = [(self.options.seed, stream, i) for i in range(len(decomps))]
        return MembershipChecker(decomps, masks, self.beta, seeds, self.search, self.device)

    def _require_fit(self) -> MembershipChecker:
        if self._checker is None:
            if self._stars:
                raise ConformalInputError(
                    "this CONSIGN was loaded from a calibration bundle without its calibration "
                    "images: only the alphas calibrated before saving are available "
                    f"({', '.join(f'{a:g}' for a in sorted(self._stars))})"
                )
            raise RuntimeError("CONSIGN is not calibrated: call fit() or calibrate() first")
        return self._checker

    def lambda_stars(self, alpha: float) -> np.ndarray:
        """Per-image ``lambda_i*`` at ``alpha`` (``inf``: not certified by ``lam_max``), cached."""
        alpha = check_alpha(alpha)
        key = round(alpha, 12)
        if key not in self._stars:
            checker = self._require_fit()
            order_statistic_rank(self.n_used, alpha)  # too few units: fail before searching
            t0 = time.perf_counter()
            self._stars[key] = self._search_stars(checker, self._coeffs, self._sing, alpha)
            self._seconds[key] = self._fit_seconds + time.perf_counter() - t0
        return self._stars[key]

    def _search_stars(
        self, checker: MembershipChecker, coeffs: np.ndarray, sing: np.ndarray, alpha: float
    ) -> np.ndarray:
        """Per-unit ``lambda_i*``: the smallest grid lambda whose box holds a found witness."""
        return self.witness_search(checker, coeffs, sing, alpha)[0]

    def witness_search(
        self, checker: MembershipChecker, coeffs: np.ndarray, sing: np.ndarray, alpha: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(lambda_i*, witnesses (n, K))`` of the units of ``checker`` (NaN: none found)."""
        m, rho = box_centre_and_radius(coeffs, sing, alpha)
        check = WitnessLevels(checker.search, m, rho, self.lam_step)
        stars = search_lambda_stars(check, len(checker), self.lam_step, self.lam_max)
        return stars, check.witnesses

    def member(self, alpha: float, lam: float | np.ndarray) -> np.ndarray:
        """Calibration membership ``(n_used,)`` at ``lam``: ``lambda_i* <= lam``.

        Monotone in ``lam`` by construction (a witness inside a box is inside every larger
        one); this is the check the order statistic is exact about.
        """
        stars = self.lambda_stars(alpha)
        return stars <= np.asarray(lam, dtype=np.float64) + 1e-12

    def lambda_hat(self, alpha: float) -> float:
        """The calibrated lambda at ``alpha``; raises :class:`LambdaMaxError` on failure."""
        return lambda_hat_from_stars(self.lambda_stars(alpha), alpha, self.beta, self.lam_max)

    def calibrate_alphas(
        self,
        alphas: Sequence[float] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[float, float]:
        """lambda-hat for every feasible grid alpha that has a set (failed levels are left out)."""
        grid = feasible_alphas(self.n_used, self.alphas if alphas is None else alphas)
        out: dict[float, float] = {}
        for j, a in enumerate(grid):
            try:
                out[float(a)] = self.lambda_hat(a)
            except LambdaMaxError:
                pass
            if progress is not None:
                progress(j + 1, len(grid))
        return out

    # -- test time -------------------------------------------------------------------------

    def decompose(self, samples: np.ndarray | Decomposition) -> Decomposition:
        """Decompose one image's samples (same layout as one calibration image).

        A :class:`Decomposition` (e.g. ``DecompositionStack.unit(z)`` of a streamed scan) is
        checked against the calibration and returned as is: every test-time method below
        needs only the decomposition, never the raw samples.
        """
        if isinstance(samples, Decomposition):
            if samples.k != self.k or samples.n_classes != self.n_classes:
                raise ConformalInputError(
                    f"the decomposition has K = {samples.k} components and "
                    f"{samples.n_classes} classes; this CONSIGN was calibrated with K = "
                    f"{self.k} and {self.n_classes} classes"
                )
            return samples
        samples = np.asarray(samples)
        return decompose_units(samples[None], self.k, self._binary)[0]

    def box(self, d: Decomposition, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """``(A, B)`` at the calibrated lambda-hat of ``alpha``."""
        return d.box(alpha, self.lambda_hat(alpha))

    def predict(
        self, samples: np.ndarray | Decomposition, alpha: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(inner, outer)`` CONSIGN envelope of one image at ``alpha`` (not a conformal set)."""
        d = self.decompose(samples)
        return envelope(d, *self.box(d, alpha))

    def label_masks(
        self, samples: np.ndarray | Decomposition, alpha: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-label ``(may, must)`` masks ``(L, *spatial)`` of one image at ``alpha``."""
        d = self.decompose(samples)
        return label_envelopes(d, *self.box(d, alpha))

    def sample(
        self, samples: np.ndarray | Decomposition, alpha: float, n: int, seed: int | None = None
    ) -> np.ndarray:
        """``n`` plausible segmentations ``(n, *spatial)`` drawn uniformly from the box.

        ``samples``: one image's MC samples or its :class:`Decomposition` (same draws).
        """
        d = self.decompose(samples)
        rng = np.random.default_rng(self.options.seed if seed is None else seed)
        return sample_labels(d, *self.box(d, alpha), n, rng)

    def bands(self, stats: ScanStats, alphas: Sequence[float] | None = None) -> Bands:
        """Envelope bands of a volume, one 2D unit per axial slice, stacked.

        ``stats.samples`` holds the raw samples ``(Z, N_s, H, W)`` or their per-slice
        ``DecompositionStack``; both give the same bands. By default the grid is the levels
        stored so far (a CONSIGN loaded from a bundle answers only for those).
        """
        if stats.samples is None:
            raise ConformalInputError("CONSIGN needs the Monte-Carlo samples of the scan")
        if alphas is None:
            alphas = sorted(float(a) for a in self._stars) or None
        count_, unit = slice_units(stats.samples)
        per_slice = [self.unit_bands(unit(z), alphas) for z in range(count_)]
        levels = per_slice[0].alphas
        for b in per_slice[1:]:
            if not np.array_equal(b.alphas, levels):  # pragma: no cover - same lambdas
                raise ConformalInputError("CONSIGN levels differ between slices")
        inner = np.empty((len(levels), len(per_slice), *per_slice[0].shape), dtype=bool)
        outer = np.empty_like(inner)
        for z, b in enumerate(per_slice):
            for j, a in enumerate(levels):
                inner[j, z], outer[j, z] = b.masks(a)
        return Bands.from_mask_stack(levels, inner, outer, self.name, dict(per_slice[0].info))

    def unit_bands(
        self, samples: np.ndarray | Decomposition, alphas: Sequence[float] | None = None
    ) -> Bands:
        """Envelope bands of one image over the grid levels that have a set.

        ``samples``: one image's MC samples or its :class:`Decomposition` (same bands).
        """
        wanted = feasible_alphas(self.n_used, self.alphas if alphas is None else alphas)
        lams = self.calibrate_alphas(wanted)
        if not lams:
            self.lambda_hat(wanted[-1])  # raises the lambda_max error with its explanation
        d = self.decompose(samples)
        levels = np.array(sorted(lams))
        pairs = [envelope(d, *d.box(a, lams[float(a)])) for a in levels]
        info = {
            "kind": ENVELOPE_NOTE,
            "lambda_hat": {float(a): lams[float(a)] for a in levels},
            "failed_alphas": [float(a) for a in wanted if float(a) not in lams],
            "beta": self.beta,
            "k": self.k,
            "n_used": self.n_used,
            "n_empty": self.n_empty,
        }
        inner = np.stack([p[0] for p in pairs])
        outer = np.stack([p[1] for p in pairs])
        return Bands.from_mask_stack(levels, inner, outer, self.name, info)
