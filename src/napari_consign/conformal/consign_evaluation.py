"""CONSIGN on test units: envelope masks, set membership and the set metrics of evaluation.

A mixin of :class:`~.consign.CONSIGN` (it reads the calibrated ``lambda_hat`` and settings).
"""

from __future__ import annotations

import numpy as np

from .consign_decomposition import Decomposition, decompose_units
from .consign_envelope import envelope, sample_labels
from .crc_rule import check_alpha
from .dataset import SegmentationSet
from .errors import ConformalInputError
from .inputs import check_labels
from .set_metrics import beta_equal, beta_scores, chao1, mean_pearson


class ConsignEvaluation:
    """Test-time metrics of a calibrated CONSIGN (mixed into :class:`~.consign.CONSIGN`)."""

    def predict_masks(
        self, data: SegmentationSet, alpha: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Envelope ``(inner, outer)`` of every unit of ``data`` at ``alpha``."""
        lam = self.lambda_hat(alpha)
        return [envelope(d, *d.box(alpha, lam)) for d in self._test_decomps(data)]

    def _test_decomps(self, data: SegmentationSet) -> list[Decomposition]:
        if data.samples is None:
            raise ConformalInputError("CONSIGN needs the Monte-Carlo samples of the test images")
        return decompose_units(data.samples, self.k, self._binary)

    def contains(self, data: SegmentationSet, alpha: float) -> np.ndarray:
        """Membership check of every unit's ground truth at lambda-hat (False for empty GT)."""
        masks = check_labels(data.masks, self.n_classes)
        used = np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))
        out = np.zeros(len(masks), dtype=bool)
        if used.size:
            decomps = self._test_decomps(data.subset(used))
            out[used] = self._certify(decomps, masks[used], alpha)
        return out

    def _certify(self, decomps: list[Decomposition], masks: np.ndarray, alpha: float) -> np.ndarray:
        """Test units' membership at lambda-hat by the calibration's own procedure.

        Each test unit gets its ``lambda*`` from the same search as a calibration unit, and is
        a member iff ``lambda* <= lambda-hat``: the exchangeable comparison of the guarantee.
        """
        lam = self.lambda_hat(alpha)
        checker = self._make_checker(decomps, masks, stream=1)
        coeffs = np.stack([d.coefficients for d in decomps])
        sing = np.stack([d.singular for d in decomps])
        return self._search_stars(checker, coeffs, sing, alpha) <= lam + 1e-12

    def summary(self, alpha: float) -> dict[str, float]:
        """lambda-hat, the fraction of calibration images certified by it, and the seconds
        the calibration at ``alpha`` took (decomposition plus search; left out after loading)."""
        stars = self.lambda_stars(alpha)
        lam = self.lambda_hat(alpha)
        out = {"lambda_hat": lam, "cal_certified": float(np.mean(stars <= lam))}
        seconds = self._seconds.get(round(check_alpha(alpha), 12))
        if seconds is not None:  # unknown for a CONSIGN loaded from a bundle
            out["calibration_s"] = seconds
        return out

    def test_metrics(self, test: SegmentationSet, alpha: float) -> dict[str, float]:
        """Set coverage by membership check, and sEC / Chao1 / mean correlation from samples."""
        lam = self.lambda_hat(alpha)
        masks = check_labels(test.masks, self.n_classes)
        used = np.flatnonzero(masks.reshape(len(masks), -1).any(axis=1))
        if not used.size:
            return {"set_coverage": float("nan")}
        decomps = self._test_decomps(test.subset(used))
        covered = self._certify(decomps, masks[used], alpha)
        n = self.metric_samples
        hits, sizes, corrs = [], [], []
        for j, d in enumerate(decomps):
            rng = np.random.default_rng((self.options.seed, 2, j))
            drawn = sample_labels(d, *d.box(alpha, lam), n, rng)
            hits.append(bool(np.any(beta_equal(beta_scores(masks[used[j]], drawn), self.beta))))
            sizes.append(chao1(drawn))
            corrs.append(mean_pearson(drawn))
        return {
            "set_coverage": float(np.mean(covered)),
            f"sEC_{n}": float(np.mean(hits)),
            f"chao1_{n}": float(np.mean(sizes)),
            f"corr_{n}": float(np.mean(corrs)),
        }
