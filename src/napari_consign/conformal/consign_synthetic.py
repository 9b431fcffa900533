"""Low-rank Monte-Carlo samples in CONSIGN's setting, for its tests and fidelity benchmark.

Each unit is an (H, W) image with one elliptical structure whose outline the simulated model
is unsure about along three smooth spatial *modes*: growth (the radius) and a shift in y and
in x. A sample draws mode coefficients ``z ~ N(0, s^2)`` (per-mode spreads ``s``) and renders
the soft mask ``sigmoid(signed distance / softness)`` of the moved structure, plus a little
independent pixel noise; the ground truth is the hard mask of one more draw along the same
modes, so the truth lies (up to the noise) in the span the principal components capture.
Difficulty varies per image: the spreads ``s`` (0.3 to 2.5 pixels), the edge softness, the
pixel noise, and for a fraction ``hard_fraction`` of images a truth drawn with twice the
spread (a model that is too confident there). Units are i.i.d., hence exchangeable. Pure
numpy, seeded; no file I/O.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from .errors import ConformalInputError


def low_rank_cases(
    n: int,
    size: int = 64,
    n_samples: int = 12,
    seed: int = 0,
    hard_fraction: float = 0.2,
) -> dict[str, np.ndarray]:
    """``n`` units: ``samples`` (n, N_s, H, W) float32 foreground probabilities, ``masks``
    (n, H, W) uint8 ground truths and ``spread`` (n,) the mean mode spread in pixels."""
    if n < 1 or size < 8 or n_samples < 2 or not 0.0 <= hard_fraction <= 1.0:
        raise ConformalInputError("need n >= 1, size >= 8, n_samples >= 2, 0 <= hard_fraction <= 1")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    cy, cx = (rng.uniform(0.35, 0.65, (2, n)) * size)[:, :, None, None, None]
    ry, rx = (rng.uniform(0.1, 0.22, (2, n)) * size)[:, :, None, None, None]
    spread = rng.uniform(0.3, 2.5, (n, 3))  # growth, shift y, shift x (pixels)
    soft = rng.uniform(0.5, 1.5, n)[:, None, None, None]
    noise = rng.uniform(0.0, 0.04, n)[:, None, None, None]
    hard = rng.uniform(size=n) < hard_fraction

    def render(z: np.ndarray) -> np.ndarray:
        """Signed distance (pixels, > 0 inside) of the structure moved by ``z`` (n, m, 3)."""
        g, dy, dx = (z[..., j, None, None] for j in range(3))
        r = np.sqrt(((yy - cy - dy) / (ry + g)) ** 2 + ((xx - cx - dx) / (rx + g)) ** 2)
        return (1.0 - r) * np.minimum(ry, rx)

    z = rng.normal(0.0, 1.0, (n, n_samples, 3)) * spread[:, None, :]
    p = expit(render(z) / soft)
    p += noise * rng.standard_normal(p.shape)
    z_true = (
        rng.normal(0.0, 1.0, (n, 1, 3))
        * spread[:, None, :]
        * np.where(hard, 2.0, 1.0)[:, None, None]
    )
    truth = render(z_true)[:, 0] > 0
    return {
        "samples": np.clip(p, 0.0, 1.0).astype(np.float32),
        "masks": truth.astype(np.uint8),
        "spread": spread.mean(axis=1),
    }
