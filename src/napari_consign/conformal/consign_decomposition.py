"""CONSIGN's per-image decomposition and lambda-scaled box (docs/methods.md §5.1).

Per unit, on its own ``N_s`` Monte-Carlo samples and without labels: flatten each sample label
axis first (``D = L |Omega|``; a 1-channel sigmoid map ``p`` becomes the two channels
``[1 - p, p]``), centre at the mean ``mu``, take the thin SVD of the centred samples through the
small ``N_s x N_s`` Gram matrix, and keep the top ``K`` components. The coefficients of sample
``n`` are ``gamma[k, n] = S_kk V[n, k]``; with ``a_k, b_k`` their ``alpha/2`` and ``1 - alpha/2``
quantiles (numpy ``linear``), ``m_k = (a_k + b_k) / 2`` and ``h_k = (b_k - a_k) / 2``, the box is

    A_k(lam) = m_k - lam * S_kk * h_k,     B_k(lam) = m_k + lam * S_kk * h_k,

including the extra singular-value factor of the authors' code. Only ``mu`` and ``U_K`` are kept
per unit, in float32; all arithmetic on them is float64. A binary unit is decomposed from its
foreground channel alone (exactly equivalent: the centred two-channel rows are ``[-x, x]``), and
:class:`DecompositionStack` stores many units compactly (only that channel for binary units).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
        """``(A(lam), B(lam))`` of docs/methods.md §5.1."""
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


def _decompose(units: np.ndarray, k: int, binary: bool):
    """Top-``k`` decomposition of a stack ``units`` ``(B, N_s, P)``, in float64.

    For ``binary`` units ``units`` holds foreground probabilities ``p`` and the decomposition
    is the one of the two channels ``[1 - p, p]``: their centred rows are ``[-x, x]``, so the
    Gram matrix is twice that of ``x`` and each component is ``[-u, u]``; only the foreground
    half ``u`` is returned. Returns ``(mean (B, P), comps (B, K, P), singular (B, K), coeffs
    (B, K, N_s))``, all float64, with the sign convention of :class:`Decomposition`. Working
    memory: one float64 copy of ``units`` (freed before the components are post-processed).
    """
    x = units.astype(np.float64)  # a copy, centred in place
    mean = x.mean(axis=1)
    x -= mean[:, None, :]
    gram = x @ np.swapaxes(x, 1, 2)
    if binary:
        gram *= 2.0
    evals, evecs = np.linalg.eigh(gram)  # ascending
    evals, evecs = evals[:, ::-1][:, :k], evecs[:, :, ::-1][:, :, :k]
    del gram
    sing = np.sqrt(np.clip(evals, 0.0, None))
    keep = sing > RELATIVE_RANK_TOLERANCE * np.maximum(sing[:, :1], np.finfo(float).tiny)
    sing = np.where(keep, sing, 0.0)
    comps = np.swapaxes(evecs, 1, 2) @ x  # (B, K, P) = S_k u_k (binary: foreground half)
    del x
    comps /= np.where(keep, sing, 1.0)[:, :, None]
    comps *= keep[:, :, None]
    # Deterministic signs (the set does not depend on them; the seeded search does): the
    # largest-|.| entry of the flattened component, first in label-first order, is positive.
    # For a binary unit that entry lies in the background half, where the component is -u.
    peak = _first_largest_magnitude(comps)
    sign = np.where((peak > 0) if binary else (peak < 0), -1.0, 1.0)
    comps *= sign[:, :, None]
    coeffs = (sign * sing)[:, :, None] * np.swapaxes(evecs, 1, 2)  # gamma = S V^T, signed
    return mean, comps, sing, coeffs


def _first_largest_magnitude(a: np.ndarray) -> np.ndarray:
    """``a[..., argmax(|a|)]`` along the last axis (first index on ties), without an ``|a|``
    temporary: the first largest-magnitude entry is the first maximum or the first minimum."""
    i_max, i_min = np.argmax(a, axis=-1)[..., None], np.argmin(a, axis=-1)[..., None]
    v_max = np.take_along_axis(a, i_max, axis=-1)[..., 0]
    v_min = np.take_along_axis(a, i_min, axis=-1)[..., 0]
    first = np.where(i_max[..., 0] <= i_min[..., 0], v_max, v_min)
    return np.where(v_max > -v_min, v_max, np.where(-v_min > v_max, v_min, first))


@dataclass
class DecompositionStack:
    """Top-``K`` decompositions of ``n`` units of one shape, in compact stacked arrays.

    What CONSIGN keeps per unit, and all it needs for its box, envelope bands and sampling
    (docs/methods.md §5.1): the float32 mean and top-``K`` components, the singular values and the
    ``K x N_s`` coefficients (whose quantiles give the box). A streamed 3D scan fills one slice
    at a time (:meth:`fill`), so the raw samples of only one slice exist at once.

    Binary units (``binary``) store only the foreground channel: ``mean`` ``(n, 1, *spatial)``
    is the MC mean of ``p`` and ``components`` ``(n, K, 1, *spatial)`` the foreground half
    ``u`` of each two-channel component ``[-u, u]``; the background mean ``1 - mean`` and half
    ``-u`` are rebuilt by :meth:`unit`. Multi-class units store ``(n, L, *spatial)`` and
    ``(n, K, L, *spatial)``. ``singular`` is ``(n, K)`` and ``coefficients`` ``(n, K, N_s)``,
    float64. :func:`decompose_units` goes through this class too, so a unit decomposed here
    from the same samples gives exactly the same :class:`Decomposition`.
    """

    mean: np.ndarray
    components: np.ndarray
    singular: np.ndarray
    coefficients: np.ndarray
    n_classes: int = 2
    binary: bool = True

    @classmethod
    def empty(
        cls,
        n: int,
        spatial: tuple[int, ...],
        k: int,
        n_samples: int,
        n_classes: int = 2,
        binary: bool = True,
    ) -> DecompositionStack:
        """Zero-filled storage for ``n`` units (filled by :meth:`fill`)."""
        k = check_k(k, n_samples)
        if binary and n_classes != 2:
            raise ConformalInputError("binary units have 2 classes")
        c = 1 if binary else int(n_classes)
        spatial = tuple(int(s) for s in spatial)
        return cls(
            mean=np.zeros((n, c, *spatial), np.float32),
            components=np.zeros((n, k, c, *spatial), np.float32),
            singular=np.zeros((n, k), np.float64),
            coefficients=np.zeros((n, k, n_samples), np.float64),
            n_classes=int(n_classes),
            binary=bool(binary),
        )

    @staticmethod
    def nbytes_for(
        n: int, spatial: tuple[int, ...], k: int, n_samples: int, n_classes: int = 2
    ) -> int:
        """Bytes a binary (``n_classes == 2``) or multi-class stack of this size holds."""
        c = 1 if n_classes == 2 else int(n_classes)
        pixels = int(np.prod(spatial))
        return n * (4 * (k + 1) * c * pixels + 8 * k * (n_samples + 1))

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    @property
    def k(self) -> int:
        return int(self.components.shape[1])

    @property
    def n_samples(self) -> int:
        return int(self.coefficients.shape[2])

    @property
    def spatial(self) -> tuple[int, ...]:
        return tuple(self.mean.shape[2:])

    @property
    def nbytes(self) -> int:
        return int(
            self.mean.nbytes
            + self.components.nbytes
            + self.singular.nbytes
            + self.coefficients.nbytes
        )

    def fill(self, index: int, units: np.ndarray) -> None:
        """Decompose ``units`` and store them at ``index, index + 1, ...``.

        ``units`` is ``(B, N_s, *spatial)`` foreground probabilities (binary) or ``(B, N_s, L,
        *spatial)`` class probabilities; any float dtype (the arithmetic is float64).
        """
        units = np.asarray(units)
        c = 1 if self.binary else self.n_classes
        want = (self.n_samples, *(() if self.binary else (c,)), *self.spatial)
        if units.shape[1:] != want:
            raise ConformalInputError(
                f"units of shape {units.shape[1:]} do not fit a stack of units {want}"
            )
        b = units.shape[0]
        mean, comps, sing, coeffs = _decompose(
            units.reshape(b, self.n_samples, -1), self.k, self.binary
        )
        sl = slice(index, index + b)
        self.mean[sl] = mean.reshape(self.mean[sl].shape)
        self.components[sl] = comps.reshape(self.components[sl].shape)
        self.singular[sl] = sing
        self.coefficients[sl] = coeffs

    def unit(self, i: int) -> Decomposition:
        """The :class:`Decomposition` of unit ``i`` (binary: both channels rebuilt)."""
        k = self.k
        if self.binary:
            fg = self.mean[i, 0].reshape(-1)
            u = self.components[i, :, 0].reshape(k, -1)
            mean = np.concatenate([np.float32(1.0) - fg, fg])
            comps = np.concatenate([-u, u], axis=1)
        else:
            mean = self.mean[i].reshape(-1)
            comps = self.components[i].reshape(k, -1)
        return Decomposition(
            mean=mean,
            components=comps,
            singular=self.singular[i],
            coefficients=self.coefficients[i],
            n_classes=self.n_classes,
            spatial=self.spatial,
        )

    def units(self, index: np.ndarray | None = None) -> list[Decomposition]:
        """:meth:`unit` for every index (default: all units)."""
        index = range(len(self)) if index is None else np.asarray(index).reshape(-1)
        return [self.unit(int(i)) for i in index]

    def select(self, index: int | slice | np.ndarray) -> DecompositionStack:
        """The units at ``index`` (views for an int or a slice)."""
        if isinstance(index, int | np.integer):
            index = slice(int(index), int(index) + 1)
        return DecompositionStack(
            self.mean[index],
            self.components[index],
            self.singular[index],
            self.coefficients[index],
            self.n_classes,
            self.binary,
        )


def decompose_batch(channels: np.ndarray, k: int) -> list[Decomposition]:
    """Decompose a stack of units ``(B, N_s, L, *spatial)`` (class probabilities)."""
    channels = np.asarray(channels)
    b, n_s, n_classes = channels.shape[:3]
    stack = DecompositionStack.empty(b, channels.shape[3:], k, n_s, n_classes, binary=False)
    stack.fill(0, channels)
    return stack.units()


def decompose_stack(units: np.ndarray, k: int, binary: bool) -> DecompositionStack:
    """Decompose stacked units: ``(n, N_s, *spatial)`` if ``binary`` else ``(n, N_s, L, ...)``.

    Works in chunks so only one chunk of float64 centred samples exists at a time.
    """
    units = np.asarray(units)
    if units.ndim < 3:
        raise ConformalInputError(f"samples have shape {units.shape}: expected (n, N_s, ...)")
    check_k(k, units.shape[1])
    check_scores(units, "'samples'")
    n_classes = 2 if binary else int(units.shape[2])
    spatial = units.shape[2:] if binary else units.shape[3:]
    stack = DecompositionStack.empty(units.shape[0], spatial, k, units.shape[1], n_classes, binary)
    per_unit = 8 * int(np.prod(units.shape[1:]))
    step = max(1, _CHUNK_BYTES // max(per_unit, 1))
    for lo in range(0, units.shape[0], step):
        stack.fill(lo, units[lo : lo + step])
    return stack


def decompose_units(units: np.ndarray, k: int, binary: bool) -> list[Decomposition]:
    """Decompose stacked units: ``(n, N_s, *spatial)`` if ``binary`` else ``(n, N_s, L, ...)``.

    The same arithmetic as :meth:`DecompositionStack.fill` (see :func:`decompose_stack`); what
    is kept per unit is its float32 mean and top-``K`` components.
    """
    units = np.asarray(units)
    if units.shape[0] == 0:
        return []
    return decompose_stack(units, k, binary).units()


def slice_units(source: np.ndarray | DecompositionStack) -> tuple[int, Callable[[int], Any]]:
    """Slice count and ``z -> unit`` of a volume's raw samples ``(Z, N_s, H, W)`` (each slice
    as float32) or of its per-slice :class:`DecompositionStack`."""
    if isinstance(source, DecompositionStack):
        return len(source), source.unit
    return int(source.shape[0]), lambda z: np.asarray(source[z], dtype=np.float32)
