"""CONSIGN's per-image decomposition and lambda-scaled box (METHODS.md 5.1).

Per unit, on its own ``N_s`` Monte-Carlo samples and without labels: flatten each sample label
axis first (``D = L |Omega|``; a 1-channel sigmoid map ``p`` becomes the two channels
``[1 - p, p]``), centre at the mean ``mu``, take the thin SVD of the centred samples through the
small ``N_s x N_s`` Gram matrix, and keep the top ``K`` components. The coefficients of sample
``n`` are ``gamma[k, n] = S_kk V[n, k]``; with ``a_k, b_k`` their ``alpha/2`` and ``1 - alpha/2``
quantiles (numpy ``linear``), ``m_k = (a_k + b_k) / 2`` and ``h_k = (b_k - a_k) / 2``, the box is

    A_k(lam) = m_k - lam * S_kk * h_k,     B_k(lam) = m_k + lam * S_kk * h_k,

including the extra singular-value factor of the authors' code. Only ``mu`` and ``U_K`` are kept
per unit, in float32; all arithmetic on them is float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConformalInputError
from .inputs import check_scores

#: Components whose singular value is below this fraction of the largest are zeroed: the Gram
#: route resolves singular values only to about sqrt(eps) of the largest.
RELATIVE_RANK_TOLERANCE = 1e-7

_CHUNK_BYTES = 1 << 27  # float64 bytes of centred samples decomposed in one batched pass


@dataclass(frozen=True)
class Decomposition:
    """Top-``K`` principal components of one unit's samples.

    ``mean`` is ``mu`` (``D``,) and ``components`` the rows ``u_k`` (``K, D``), both float32,
    flattened label-first from ``(n_classes, *spatial)``. ``singular`` holds ``S_kk`` and
    ``coefficients`` the ``K x N_s`` matrix ``gamma`` (float64).
    """

    mean: np.ndarray
    components: np.ndarray
    singular: np.ndarray
    coefficients: np.ndarray
    n_classes: int
    spatial: tuple[int, ...]

    @property
    def k(self) -> int:
        return int(self.components.shape[0])

    def centre_and_radius(self, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """``(m, rho)`` with the box at ``lam`` equal to ``[m - lam * rho, m + lam * rho]``."""
        return box_centre_and_radius(self.coefficients, self.singular, alpha)

    def box(self, alpha: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
        """``(A(lam), B(lam))`` of METHODS.md 5.1."""
        m, rho = self.centre_and_radius(alpha)
        return m - lam * rho, m + lam * rho

    def scores(self, c: np.ndarray) -> np.ndarray:
        """``mu + U_K c`` reshaped to ``(..., n_classes, *spatial)`` (float64)."""
        c = np.asarray(c, dtype=np.float64)
        flat = self.mean.astype(np.float64) + c @ self.components.astype(np.float64)
        return flat.reshape(*c.shape[:-1], self.n_classes, *self.spatial)

    def labels(self, c: np.ndarray) -> np.ndarray:
        """``P(mu + U_K c)``: argmax over labels, ties to the lowest label."""
        return np.argmax(self.scores(c), axis=-1 - len(self.spatial))


def box_centre_and_radius(
    coefficients: np.ndarray, singular: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Centre ``m`` and per-unit-lambda half-width ``rho = S h`` of the box, batched.

    ``coefficients`` is ``(..., K, N_s)`` and ``singular`` ``(..., K)``.
    """
    q = np.quantile(coefficients, [alpha / 2.0, 1.0 - alpha / 2.0], axis=-1, method="linear")
    a, b = q[0], q[1]
    return (a + b) / 2.0, singular * (b - a) / 2.0


def as_channels(samples: np.ndarray, binary: bool) -> np.ndarray:
    """Samples of one unit as ``(N_s, L, *spatial)`` float64 class probabilities.

    Binary units are ``(N_s, *spatial)`` foreground probabilities and get the channels
    ``[1 - p, p]``.
    """
    s = np.asarray(samples, dtype=np.float64)
    if binary:
        return np.stack([1.0 - s, s], axis=1)
    return s


def check_k(k: int, n_samples: int) -> int:
    """Validate the number of kept components against the number of samples."""
    if n_samples < 2:
        raise ConformalInputError(
            f"CONSIGN needs at least 2 Monte-Carlo samples per image to find principal "
            f"components, got N_s = {n_samples}; draw more samples (the paper uses 30)"
        )
    if int(k) != k or k < 1:
        raise ConformalInputError(f"K (principal components) must be a positive integer, got {k}")
    if k > n_samples - 1:
        raise ConformalInputError(
            f"K = {k} principal components but N_s = {n_samples} samples span at most "
            f"N_s - 1 = {n_samples - 1} (after centring); use K <= {n_samples - 1} or draw "
            "more samples"
        )
    return int(k)


def decompose_batch(channels: np.ndarray, k: int) -> list[Decomposition]:
    """Decompose a stack of units ``(B, N_s, L, *spatial)`` (class probabilities)."""
    channels = np.asarray(channels, dtype=np.float64)
    b, n_s, n_classes = channels.shape[:3]
    spatial = tuple(channels.shape[3:])
    k = check_k(k, n_s)
    x = channels.reshape(b, n_s, -1)
    mean = x.mean(axis=1)
    xc = x - mean[:, None, :]
    gram = xc @ np.swapaxes(xc, 1, 2)
    evals, evecs = np.linalg.eigh(gram)  # ascending
    evals, evecs = evals[:, ::-1][:, :k], evecs[:, :, ::-1][:, :, :k]
    sing = np.sqrt(np.clip(evals, 0.0, None))
    keep = sing > RELATIVE_RANK_TOLERANCE * np.maximum(sing[:, :1], np.finfo(float).tiny)
    sing = np.where(keep, sing, 0.0)
    comps = np.swapaxes(evecs, 1, 2) @ xc  # (B, K, D) = S_k u_k
    comps /= np.where(keep, sing, 1.0)[:, :, None]
    comps *= keep[:, :, None]
    # Deterministic signs (the set does not depend on them; the seeded search does).
    peak = np.take_along_axis(comps, np.argmax(np.abs(comps), axis=2)[:, :, None], axis=2)
    sign = np.where(peak[:, :, 0] < 0, -1.0, 1.0)
    comps *= sign[:, :, None]
    coeffs = (sign * sing)[:, :, None] * np.swapaxes(evecs, 1, 2)  # gamma = S V^T, signed
    return [
        Decomposition(
            mean=mean[i].astype(np.float32),
            components=comps[i].astype(np.float32),
            singular=sing[i].copy(),
            coefficients=coeffs[i].copy(),
            n_classes=n_classes,
            spatial=spatial,
        )
        for i in range(b)
    ]


def decompose_units(units: np.ndarray, k: int, binary: bool) -> list[Decomposition]:
    """Decompose stacked units: ``(n, N_s, *spatial)`` if ``binary`` else ``(n, N_s, L, ...)``.

    Works in chunks so only one chunk of float64 centred samples exists at a time; what is kept
    per unit is its float32 mean and top-``K`` components.
    """
    units = np.asarray(units)
    if units.shape[0] == 0:
        return []
    check_k(k, units.shape[1])
    check_scores(units, "'samples'")
    per_unit = 8 * int(np.prod(units.shape[1:])) * (2 if binary else 1)
    step = max(1, _CHUNK_BYTES // max(per_unit, 1))
    out: list[Decomposition] = []
    for lo in range(0, units.shape[0], step):
        chunk = units[lo : lo + step]
        out.extend(decompose_batch(np.stack([as_channels(u, binary) for u in chunk]), k))
    return out
