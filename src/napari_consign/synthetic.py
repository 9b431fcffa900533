"""Synthetic lesion cases with Monte-Carlo probability maps (pure numpy, seeded).

Each unit is an (H, W) image with one elliptical lesion (or none) and ``N_s`` stochastic
foreground probability maps from a simulated segmentation model whose confidence follows the
lesion's contrast: strong lesions get probabilities near 1, faint ones near 0.5, so a single
global threshold over- or under-covers depending on the image. Units are i.i.d., hence
exchangeable: the setting in which the conformal guarantees hold exactly. Used by the tests,
the benchmarks and ``scripts/make_synthetic_samples.py``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import zoom


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], size: int) -> np.ndarray:
    """Spatially correlated standard-normal-ish fields of shape ``shape + (size, size)``."""
    coarse = rng.standard_normal((*shape, 6, 6))
    factors = (1,) * len(shape) + (size / 6, size / 6)
    return zoom(coarse, factors, order=1)[..., :size, :size]


def lesion_cases(
    n: int,
    size: int = 32,
    n_samples: int = 8,
    seed: int = 0,
    empty_fraction: float = 0.0,
) -> dict[str, np.ndarray]:
    """``n`` synthetic units: ``samples`` (n, N_s, H, W) float32, ``masks`` (n, H, W) uint8,
    ``images`` (n, H, W) float32 and ``contrast`` (n,) in [0.15, 1] (0 for empty units)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    cy = rng.uniform(0.3, 0.7, n)[:, None, None] * size
    cx = rng.uniform(0.3, 0.7, n)[:, None, None] * size
    ry = rng.uniform(0.08, 0.25, n)[:, None, None] * size
    rx = rng.uniform(0.08, 0.25, n)[:, None, None] * size
    radius = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    present = rng.uniform(size=n) >= empty_fraction
    contrast = np.where(present, rng.uniform(0.15, 1.0, n), 0.0)
    masks = ((radius <= 1.0) & present[:, None, None]).astype(np.uint8)
    soft = 1.0 / (1.0 + np.exp(-(1.0 - radius) / 0.12)) * present[:, None, None]

    images = (
        0.3
        + 0.1 * _smooth_noise(rng, (n,), size)
        + 0.6 * contrast[:, None, None] * soft
        + 0.05 * rng.standard_normal((n, size, size))
    ).astype(np.float32)

    gain = (3.0 + 6.0 * contrast)[:, None, None]
    systematic = 1.0 * _smooth_noise(rng, (n,), size)
    logit = -4.0 + gain * soft + systematic
    mc = 0.6 * _smooth_noise(rng, (n, n_samples), size)
    mc += 0.3 * rng.standard_normal((n, n_samples, 1, 1))
    samples = 1.0 / (1.0 + np.exp(-(logit[:, None] + mc)))
    return {
        "samples": samples.astype(np.float32),
        "masks": masks,
        "images": images,
        "contrast": contrast.astype(np.float32),
    }
