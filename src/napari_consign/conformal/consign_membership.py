"""CONSIGN's membership check: is the ground truth beta-equal to some prediction in the box?

:meth:`MembershipChecker.search` certifies a batch of ``(unit, box)`` pairs and returns, for
each certified one, a *witness*: a coefficient vector ``c`` in the box whose prediction
``P(mu + U_K c)`` has hard beta-score above beta (re-checked on the full image). A certificate
is a witness, so "certified" implies "in the set": the check may miss members, never invent
them. Two strategies (:class:`~.consign_search_settings.SearchSettings`):

* ``"lines"`` (default, :mod:`.consign_lines`): hard checks of the box centre, its ``2^K``
  vertices, ``n_lhs`` Latin-hypercube points (seeded per unit) and the caller's hints, then
  coordinate ascent on the hard score by line scans (:mod:`.consign_linesearch`).
* ``"adam"`` (:mod:`.consign_adam`): the authors' procedure (docs/methods.md §5.3), LHS points
  then projected Adam on the soft per-class recall; the reference the fast strategy is
  measured against (``benchmarks/bench_consign_fidelity.py``).

Before either, a closed-form bound rules out boxes in which no point can pass: per pixel, a
label can win somewhere in the box only if its margin over background can reach the right sign
(exact for two classes, a relaxation for more), so the fraction of each label's ground-truth
pixels where it may win bounds that label's recall. If the bound on the macro recall is at most
beta, no witness exists and the search is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .consign_adam import adam_search
from .consign_decomposition import Decomposition
from .consign_lines import lines_search
from .consign_linesearch import box_margins, may_win
from .consign_search_settings import SearchSettings, StrategyParams, lhs_points
from .consign_unit_batch import UnitBatch, score_points
from .device import resolve_device
from .errors import ConformalInputError
from .set_metrics import SCORE_TOLERANCE, check_beta

_SOFT_EPS = 1e-6  # smoothing of the soft per-class recall (docs/methods.md §5.3)


class MembershipChecker:
    """Batched membership checks for a fixed list of units (same shape) and their truths.

    ``seeds[i]`` seeds unit ``i``'s Latin hypercube. Units whose ground truth has no
    non-background label must be excluded by the caller.
    """

    def __init__(
        self,
        decompositions: Sequence[Decomposition],
        truths: Sequence[np.ndarray],
        beta: float,
        seeds: Sequence[int | Sequence[int]],
        settings: SearchSettings | None = None,
        device: str | torch.device | None = "cpu",
    ) -> None:
        if len(decompositions) != len(truths) or len(seeds) != len(truths):
            raise ConformalInputError("one ground truth and one seed per unit are needed")
        if not decompositions:
            raise ConformalInputError("no units to check")
        self.beta = check_beta(beta)
        self.settings = settings or SearchSettings()
        self.device = resolve_device(device, float64=True)
        self._budget = self.settings.max_elements or (
            1 << (26 if self.device.type == "cuda" else 22)
        )
        first = decompositions[0]
        if any(
            (d.n_classes, d.spatial, d.k) != (first.n_classes, first.spatial, first.k)
            for d in decompositions
        ):
            raise ConformalInputError("all units of one calibration set must have the same shape")
        self.n_classes, self.k = first.n_classes, first.k
        self.n_pixels = int(np.prod(first.spatial))
        dev = self.device
        self._mean = torch.from_numpy(np.stack([d.mean for d in decompositions])).to(dev)
        self._comps = torch.from_numpy(np.stack([d.components for d in decompositions])).to(dev)
        labels = np.stack([np.asarray(t).reshape(-1) for t in truths]).astype(np.int64)
        if labels.shape[1] != self.n_pixels:
            raise ConformalInputError("ground-truth masks must have the samples' spatial shape")
        if labels.min() < 0 or labels.max() >= self.n_classes:
            raise ConformalInputError(
                f"ground-truth labels lie in [{labels.min()}, {labels.max()}] but the samples "
                f"have {self.n_classes} classes (labels 0..{self.n_classes - 1})"
            )
        counts = np.stack([np.bincount(row, minlength=self.n_classes) for row in labels])
        present = counts > 0
        self._labels = torch.from_numpy(labels).to(dev)
        self._inv_count = torch.from_numpy(np.where(present, 1.0 / np.maximum(counts, 1), 0.0))
        self._inv_count = self._inv_count.to(dev)
        self._n_present = torch.from_numpy(present.sum(axis=1).astype(np.float64)).to(dev)
        soft_w = np.where(present, 1.0 / (counts + _SOFT_EPS), 0.0)
        self._soft_const = torch.from_numpy((soft_w * _SOFT_EPS).sum(axis=1)).to(dev)
        self._soft_weight = torch.from_numpy(soft_w).to(dev)
        lhs = np.stack([lhs_points(self.k, self.settings.n_lhs, s) for s in seeds])
        self._lhs = torch.from_numpy(lhs).to(dev)
        self._params = StrategyParams(self.settings, self.beta, self.n_classes, self._budget)

    def __len__(self) -> int:
        return int(self._labels.shape[0])

    def check(self, units: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """Certify units ``units`` against boxes ``[lower[j], upper[j]]`` (``(b, K)`` each)."""
        return self.search(units, lower, upper)[0]

    def search(
        self,
        units: np.ndarray,
        lower: np.ndarray,
        upper: np.ndarray,
        hints: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(found (b,), witness (b, K))``: a point of each box that passes (NaN if none).

        ``hints`` ``(b, K)`` are extra points to try first (clamped into the box; NaN rows
        are ignored), e.g. a witness found for a larger box of the same unit.
        """
        units = np.asarray(units, dtype=np.int64).reshape(-1)
        lower = np.asarray(lower, dtype=np.float64).reshape(units.size, self.k)
        upper = np.asarray(upper, dtype=np.float64).reshape(units.size, self.k)
        if hints is not None:
            hints = np.asarray(hints, dtype=np.float64).reshape(units.size, self.k)
        found = np.zeros(units.size, dtype=bool)
        witness = np.full((units.size, self.k), np.nan)
        todo = np.arange(units.size)
        if self.settings.prune:
            todo = todo[self.possible(units, lower, upper)]
        n_points = self.settings.n_starts if self.settings.strategy == "adam" else 8
        per_unit = (self.n_classes - 1) * self.n_pixels * n_points
        step = max(1, self._budget // per_unit)
        run = self._adam_batch if self.settings.strategy == "adam" else self._lines_batch
        for lo in range(0, todo.size, step):
            sl = todo[lo : lo + step]
            h = None if hints is None else hints[sl]
            ok, c = run(units[sl], lower[sl], upper[sl], h)
            ok &= self._verify(units[sl], c)
            found[sl], witness[sl[ok]] = ok, c[ok]
        return found, witness

    def possible(self, units: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        """False where no point of the box can pass the hard check (a necessary condition).

        Label ``l >= 1`` wins at a pixel only where ``z_l = sigma_l - sigma_0 > 0`` and
        background only where every ``z_l <= 0`` (ties go to background), so "may win" is
        bounded by the box extremes of ``z_l``; the fraction of each label's ground-truth
        pixels where it may win bounds its recall, and their mean bounds the score.
        """
        units = np.asarray(units, dtype=np.int64).reshape(-1)
        lower = np.asarray(lower, dtype=np.float64).reshape(units.size, self.k)
        upper = np.asarray(upper, dtype=np.float64).reshape(units.size, self.k)
        out = np.zeros(units.size, dtype=bool)
        step = max(1, self._budget // max(1, (self.n_classes - 1) * self.n_pixels * self.k))
        for lo in range(0, units.size, step):
            sl = slice(lo, lo + step)
            out[sl] = self._score_bound(units[sl], lower[sl], upper[sl]) > self.beta
        return out

    def _score_bound(self, units: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        batch = self._batch(units)
        lo = torch.from_numpy(lower).to(self.device)
        hi = torch.from_numpy(upper).to(self.device)
        may = may_win(*box_margins(batch.mean, batch.comps, lo, hi), self.n_classes)
        at_truth = may.gather(1, batch.labels[:, None, :]).squeeze(1)
        bound = (at_truth * batch.weight).sum(dim=1)
        return (bound + SCORE_TOLERANCE).cpu().numpy()

    def _verify(self, units: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Hard check of candidate witnesses ``c`` ``(b, K)`` on the full images (NaN: False)."""
        out = np.zeros(units.size, dtype=bool)
        have = np.flatnonzero(~np.isnan(c).any(axis=1))
        if have.size:
            point = torch.from_numpy(c[have][:, None, :]).to(self.device)
            _, passed = self._evaluate(point, self._batch(units[have]), soft=False)
            out[have] = passed[:, 0].cpu().numpy()
        return out

    # -- internals -------------------------------------------------------------------------

    def _evaluate(
        self, c: torch.Tensor, batch: UnitBatch, soft: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Soft loss (differentiable) and hard pass flags of points ``c`` (b, P, K)."""
        return score_points(c, batch, self.n_classes, self.beta, self.settings.temperature, soft)

    def _batch(self, units: np.ndarray) -> UnitBatch:
        idx = torch.from_numpy(units).to(self.device)
        labels = self._labels[idx]
        b, n_lab = units.size, self.n_classes
        mean = self._mean[idx].to(torch.float64).view(b, n_lab, -1)
        comps = self._comps[idx].to(torch.float64).view(b, self.k, n_lab, -1)
        n_present = self._n_present[idx]
        return UnitBatch(
            mean=(mean[:, 1:] - mean[:, :1]).reshape(b, -1),
            comps=(comps[:, :, 1:] - comps[:, :, :1]).reshape(b, self.k, -1),
            labels=labels,
            weight=self._inv_count[idx].gather(1, labels) / n_present[:, None],
            sign=1.0 - 2.0 * labels.to(torch.float64),
            n_present=n_present,
            soft_weight=self._soft_weight[idx].gather(1, labels),
            soft_const=self._soft_const[idx],
        )

    def _lines_batch(
        self, units: np.ndarray, lower: np.ndarray, upper: np.ndarray, hints: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``"lines"`` strategy on one batch: ``(found, witness)`` before verification."""
        batch, lhs, lo, hi = self._boxes(units, lower, upper)
        return lines_search(batch, lhs, lo, hi, hints, self._params)

    def _adam_batch(
        self, units: np.ndarray, lower: np.ndarray, upper: np.ndarray, hints: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The authors' strategy on one batch: ``(found, witness)`` (``hints`` unused)."""
        batch, lhs, lo, hi = self._boxes(units, lower, upper)
        return adam_search(batch, lhs, lo, hi, self._params)

    def _boxes(
        self, units: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> tuple[UnitBatch, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The units' batch, their LHS fractions ``(b, n_lhs, K)`` and the boxes on the device."""
        dev = self.device
        lhs = self._lhs[torch.from_numpy(units).to(dev)]
        lo = torch.from_numpy(lower).to(dev)
        hi = torch.from_numpy(upper).to(dev)
        return self._batch(units), lhs, lo, hi
