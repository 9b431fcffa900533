"""SegmentationSet: stacked Monte-Carlo samples, score maps and masks of n units.

This is the in-memory form of the NPZ contract (README): ``samples`` holds ``N_s`` stochastic
foreground probabilities per unit, shape ``(n, N_s, H, W)``, or class probabilities
``(n, N_s, L, H, W)``. The threshold methods use the score map ``scores`` = Monte-Carlo mean of
the foreground probability; for ``L > 2`` classes the foreground is "any label but 0", so the
score is ``1 - mean P(background)`` (docs/methods.md §1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConformalInputError
from .inputs import check_scores


@dataclass(frozen=True)
class SegmentationSet:
    """n units with samples, score maps, ground truth and optional images (all stacked)."""

    samples: np.ndarray | None
    scores: np.ndarray
    masks: np.ndarray
    images: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes including background (2 for a binary task)."""
        if self.samples is not None and self.samples.ndim == 5:
            return int(self.samples.shape[2])
        return 2

    def foreground_variance(self) -> np.ndarray:
        """Per-pixel variance of the MC foreground probability, (n, H, W) float32."""
        if self.samples is None:
            raise ConformalInputError("the MC variance needs the samples, which are absent")
        fg = self.samples if self.samples.ndim == 4 else 1.0 - self.samples[:, :, 0]
        return fg.var(axis=1, dtype=np.float64).astype(np.float32)

    def subset(self, index: np.ndarray) -> SegmentationSet:
        """The units at ``index`` (views or copies of every array)."""

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return SegmentationSet(
            take(self.samples), self.scores[index], self.masks[index], take(self.images)
        )

    @classmethod
    def from_samples(
        cls, samples: np.ndarray, masks: np.ndarray, images: np.ndarray | None = None
    ) -> SegmentationSet:
        """Validate the contract's arrays and derive the score maps."""
        samples = np.asarray(samples)
        masks = np.asarray(masks)
        if samples.ndim not in (4, 5):
            raise ConformalInputError(
                f"'samples' has shape {samples.shape}: expected (n, N_s, H, W) foreground "
                "probabilities or (n, N_s, L, H, W) class probabilities"
            )
        n, n_s = samples.shape[:2]
        spatial = samples.shape[-2:]
        if n_s < 1:
            raise ConformalInputError("'samples' holds no Monte-Carlo sample (N_s = 0)")
        if masks.shape != (n, *spatial):
            raise ConformalInputError(
                f"'masks' has shape {masks.shape} but 'samples' needs ({n}, {spatial[0]}, "
                f"{spatial[1]}): one (H, W) mask per unit"
            )
        if not np.issubdtype(masks.dtype, np.integer) and masks.dtype != bool:
            if np.isnan(masks).any() or np.any(masks != np.round(masks)):
                raise ConformalInputError("'masks' must hold integer labels")
        check_scores(samples, "'samples'")
        n_labels = samples.shape[2] if samples.ndim == 5 else 2
        if masks.size and (masks.min() < 0 or masks.max() >= n_labels):
            raise ConformalInputError(
                f"'masks' has labels in [{int(masks.min())}, {int(masks.max())}] but the "
                f"samples have {n_labels} classes (labels 0..{n_labels - 1})"
            )
        if images is not None:
            images = np.asarray(images)
            ok = images.shape == (n, *spatial) or (
                images.ndim == 4 and images.shape[0] == n and images.shape[2:] == spatial
            )
            if not ok:
                raise ConformalInputError(
                    f"'images' has shape {images.shape}: expected ({n}, H, W) or ({n}, C, H, W) "
                    f"with (H, W) = {spatial}"
                )
            if not np.isfinite(images).all():
                raise ConformalInputError("'images' contains NaN or infinite values")
        if samples.ndim == 4:
            scores = samples.mean(axis=1, dtype=np.float64)
        else:
            scores = 1.0 - samples[:, :, 0].mean(axis=1, dtype=np.float64)
        scores = np.clip(scores, 0.0, 1.0).astype(np.float32)
        return cls(samples, scores, masks, images)
