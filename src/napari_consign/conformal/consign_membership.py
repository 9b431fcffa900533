"""CONSIGN's membership check: is the ground truth beta-equal to some prediction in the box?

:meth:`MembershipChecker.search` certifies a batch of ``(unit, box)`` pairs and returns, for
each certified one, a *witness*: a coefficient vector ``c`` in the box whose prediction
``P(mu + U_K c)`` has hard beta-score above beta (re-checked on the full image). A certificate
is a witness, so "certified" implies "in the set": the check may miss members, never invent
them. Two strategies (:class:`SearchSettings`):

* ``"lines"`` (default, :mod:`.consign_linesearch`): hard checks of the box centre, its
  ``2^K`` vertices, ``n_lhs`` Latin-hypercube points (seeded per unit) and the caller's hints,
  then coordinate ascent on the hard score itself from the ``n_starts`` best, by line scans
  along the axes and fixed oblique directions, on the small problem of the pixels whose label
  can change in the box. Units stop as soon as one point passes.
* ``"adam"``: the authors' procedure (docs/methods.md §5.3): LHS points hard-checked, the best
  ``n_starts`` by the soft per-class recall (softmax at temperature 1e-4) refined by projected
  Adam (lr 1, patience 50, at most ``max_steps``), every visited point hard-checked. Kept as
  the reference the fast strategy is measured against (``benchmarks/bench_consign_fidelity.py``).

Before either, a closed-form bound rules out boxes in which no point can pass: per pixel, a
label can win somewhere in the box only if its margin over background can reach the right sign
(exact for two classes, a relaxation for more), so the fraction of each label's ground-truth
pixels where it may win bounds that label's recall. If the bound on the macro recall is at most
beta, no witness exists and the search is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import qmc

from .consign_decomposition import Decomposition
from .consign_linesearch import (
    BatchRows,
    Reduced,
    box_margins,
    may_win,
    oblique_directions,
    passes,
    predict,
    reduce_boxes,
    vertex_fractions,
)
from .device import resolve_device
from .errors import ConformalInputError
from .set_metrics import SCORE_TOLERANCE, check_beta

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_SOFT_EPS = 1e-6  # smoothing of the soft per-class recall (docs/methods.md §5.3)


@dataclass(frozen=True)
class SearchSettings:
    """Settings of the membership search (defaults: the fast ``"lines"`` strategy).

    :meth:`authors` gives the authors' medical settings (``"adam"``, 1,000 LHS points, 10
    starts). ``max_steps``, ``patience``, ``lr`` and ``temperature`` apply to ``"adam"``;
    ``sweeps`` to ``"lines"``.
    """

    n_lhs: int = 64
    n_starts: int = 4
    lr: float = 1.0
    max_steps: int = 1000
    patience: int = 50
    temperature: float = 1e-4
    #: skip the search when the closed-form recall bound already rules the box out
    prune: bool = True
    #: float64 elements of one (units x points x D) temporary; None: 2^22 on CPU, 2^26 on CUDA
    max_elements: int | None = None
    strategy: str = "lines"
    #: coordinate-ascent sweeps (each scans the K axes and K oblique directions)
    sweeps: int = 8

    def __post_init__(self) -> None:
        if self.n_lhs < 1 or self.n_starts < 1 or self.n_starts > self.n_lhs:
            raise ConformalInputError("need 1 <= n_starts <= n_lhs Latin-hypercube points")
        if self.max_steps < 0 or self.patience < 1 or self.temperature <= 0 or self.lr <= 0:
            raise ConformalInputError("max_steps >= 0, patience >= 1, lr > 0, temperature > 0")
        if self.max_elements is not None and self.max_elements < 1:
            raise ConformalInputError("max_elements must be positive (or None for the default)")
        if self.strategy not in ("lines", "adam"):
            raise ConformalInputError(
                f"unknown search strategy {self.strategy!r}; use lines or adam"
            )
        if self.sweeps < 0:
            raise ConformalInputError("sweeps must be >= 0")

    @classmethod
    def authors(cls, **changes) -> SearchSettings:
        """The authors' procedure for medical data (docs/methods.md §5.3), with a 1,000-step cap."""
        return cls(**{"strategy": "adam", "n_lhs": 1000, "n_starts": 10, **changes})


def lhs_points(k: int, n: int, seed: int | Sequence[int]) -> np.ndarray:
    """``n`` Latin-hypercube points in ``[0, 1)^k``, reproducible from ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    return qmc.LatinHypercube(d=k, rng=rng).random(n)


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
        self, c: torch.Tensor, batch: _Batch, soft: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Soft loss (differentiable) and hard pass flags of points ``c`` (b, P, K).

        Works on the label differences ``z_l = sigma_l - sigma_0`` (``l >= 1``): argmax and
        softmax over ``[0, z]`` equal those over ``sigma``.
        """
        b, p = c.shape[:2]
        n_diff = self.n_classes - 1
        z = torch.baddbmm(batch.mean[:, None, :], c, batch.comps).view(b, p, n_diff, -1)
        pred = predict(z)
        match = pred == batch.labels[:, None, :]
        passed = passes((match * batch.weight[:, None, :]).sum(dim=2), self.beta)
        if not soft:
            return None, passed
        zt = z / self.settings.temperature
        if n_diff == 1:  # log softmax at the GT label: -softplus(+-z/T)
            logq = -torch.nn.functional.softplus(batch.sign[:, None, :] * zt[:, :, 0])
        else:
            padded = torch.cat([torch.zeros_like(zt[:, :, :1]), zt], dim=2)
            index = batch.labels[:, None, None, :].expand(b, p, 1, -1)
            logq = padded.gather(2, index).squeeze(2) - torch.logsumexp(padded, dim=2)
        recall = (logq.exp() * batch.soft_weight[:, None, :]).sum(dim=2) + batch.soft_const[:, None]
        return 1.0 - recall / batch.n_present[:, None], passed

    def _batch(self, units: np.ndarray) -> _Batch:
        idx = torch.from_numpy(units).to(self.device)
        labels = self._labels[idx]
        b, n_lab = units.size, self.n_classes
        mean = self._mean[idx].to(torch.float64).view(b, n_lab, -1)
        comps = self._comps[idx].to(torch.float64).view(b, self.k, n_lab, -1)
        n_present = self._n_present[idx]
        return _Batch(
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
        s, dev = self.settings, self.device
        batch = self._batch(units)
        lo = torch.from_numpy(lower).to(dev)
        hi = torch.from_numpy(upper).to(dev)
        red = reduce_boxes(
            batch.mean, batch.comps, batch.labels, batch.weight, lo, hi, self.n_classes
        )
        b, k = lo.shape
        fixed = torch.cat(
            [
                torch.full((1, k), 0.5, dtype=torch.float64, device=dev),
                vertex_fractions(k, lo.dtype, dev),
            ]
        )
        frac = torch.cat([fixed.expand(b, -1, -1), self._lhs[torch.from_numpy(units).to(dev)]], 1)
        cands = lo[:, None, :] + frac * (hi - lo)[:, None, :]
        cands = torch.clamp(cands, min=lo[:, None, :], max=hi[:, None, :])  # rounding at vertices
        if hints is not None:
            h = torch.from_numpy(hints).to(dev)
            h = torch.where(torch.isnan(h), (lo + hi) / 2.0, torch.clamp(h, min=lo, max=hi))
            cands = torch.cat([h[:, None, :], cands], dim=1)
        score = self._reduced_scores(red, cands)
        found, witness = _first_passing(cands, score, self.beta)
        todo = torch.nonzero(~found).squeeze(1)
        if todo.numel() and s.sweeps:
            top = score[todo].topk(min(s.n_starts, cands.shape[1]), dim=1).indices
            starts = cands[todo[:, None], top]
            ok, c = self._ascend(
                red.take(todo), starts, score[todo[:, None], top], lo[todo], hi[todo]
            )
            found[todo], witness[todo] = ok, c
        return found.cpu().numpy(), witness.cpu().numpy()

    def _reduced_scores(self, red: Reduced, c: torch.Tensor) -> torch.Tensor:
        """Hard scores ``(b, C)`` of points ``c`` ``(b, C, K)``, in chunks of the budget."""
        b, n = c.shape[:2]
        per_point = b * red.mean.shape[1] * red.mean.shape[2]
        chunk = max(1, self._budget // max(1, per_point))
        return torch.cat([red.score(c[:, i : i + chunk]) for i in range(0, n, chunk)], dim=1)

    def _ascend(
        self, red: Reduced, c: torch.Tensor, cur: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Coordinate ascent by line scans from starts ``c`` ``(b, S, K)`` with scores ``cur``.

        Returns ``(found (b,), witness (b, K))``; a unit stops when a start passes or a whole
        sweep improves none of its starts.
        """
        s = self.settings
        n_units = c.shape[0]
        found = torch.zeros(n_units, dtype=torch.bool, device=self.device)
        witness = torch.full((n_units, self.k), torch.nan, dtype=torch.float64, device=self.device)
        alive = torch.arange(n_units, device=self.device)
        dirs = oblique_directions(self.k, c.dtype, self.device)
        for _ in range(s.sweeps):
            gained = torch.zeros(alive.numel(), dtype=torch.bool, device=self.device)
            for d in dirs:
                point, best = red.line_scan(c, d, lo, hi)
                # move to the line's best point when it is at least as good: equal moves
                # re-centre on a plateau; only strict gains keep a unit searching
                moved = torch.where((best >= cur)[..., None], point, c)
                new = red.score(moved)
                accept = new >= cur
                gained |= (new > cur).any(dim=1)
                c = torch.where(accept[..., None], moved, c)
                cur = torch.where(accept, new, cur)
                ok, wit = _first_passing(c, cur, self.beta)
                if bool(ok.any()):
                    found[alive[ok]], witness[alive[ok]] = True, wit[ok]
                    keep = torch.nonzero(~ok).squeeze(1)
                    alive, red, c, cur = alive[keep], red.take(keep), c[keep], cur[keep]
                    lo, hi, gained = lo[keep], hi[keep], gained[keep]
                    if not alive.numel():
                        return found, witness
            keep = torch.nonzero(gained).squeeze(1)
            if not keep.numel():
                break
            alive, red, c, cur, lo, hi = (
                alive[keep],
                red.take(keep),
                c[keep],
                cur[keep],
                lo[keep],
                hi[keep],
            )
        return found, witness

    def _adam_batch(
        self, units: np.ndarray, lower: np.ndarray, upper: np.ndarray, hints: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The authors' strategy on one batch: ``(found, witness)`` (``hints`` unused)."""
        s = self.settings
        batch = self._batch(units)
        lo = torch.from_numpy(lower).to(self.device)
        hi = torch.from_numpy(upper).to(self.device)
        width = hi - lo
        lhs = self._lhs[torch.from_numpy(units).to(self.device)]
        b = units.size
        found = torch.zeros(b, dtype=torch.bool, device=self.device)
        witness = torch.full((b, self.k), torch.nan, dtype=torch.float64, device=self.device)
        soft_all = torch.empty(b, s.n_lhs, dtype=torch.float64, device=self.device)
        chunk = max(1, self._budget // max(1, b * (self.n_classes - 1) * self.n_pixels))
        with torch.no_grad():
            for p0 in range(0, s.n_lhs, chunk):
                c = lo[:, None, :] + lhs[:, p0 : p0 + chunk] * width[:, None, :]
                soft, passed = self._evaluate(c, batch)
                soft_all[:, p0 : p0 + chunk] = soft
                new = passed.any(dim=1) & ~found
                first = passed.to(torch.int8).argmax(dim=1)
                witness[new] = c[new, first[new]]
                found |= new
        todo = torch.nonzero(~found).squeeze(1)
        if todo.numel():
            best = soft_all[todo].topk(s.n_starts, dim=1, largest=False).indices
            starts = lo[todo, None, :] + lhs[todo[:, None], best] * width[todo, None, :]
            ok, wit = self._optimise(batch.take(todo), starts, lo[todo], hi[todo])
            found[todo], witness[todo] = ok, wit
        return found.cpu().numpy(), witness.cpu().numpy()

    def _optimise(
        self, batch: _Batch, c: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected Adam from every start; ``(found, witness)`` per unit."""
        s = self.settings
        b1, b2 = _ADAM_BETAS
        n_units = c.shape[0]
        found = torch.zeros(n_units, dtype=torch.bool, device=self.device)
        witness = torch.full((n_units, self.k), torch.nan, dtype=torch.float64, device=self.device)
        alive = torch.arange(n_units, device=self.device)  # units still searching
        lo, hi = lo[:, None, :], hi[:, None, :]
        m1, m2 = torch.zeros_like(c), torch.zeros_like(c)
        best = torch.full(c.shape[:2], torch.inf, dtype=torch.float64, device=self.device)
        since = torch.zeros(c.shape[:2], dtype=torch.int64, device=self.device)
        active = torch.ones(c.shape[:2], dtype=torch.bool, device=self.device)
        for step in range(s.max_steps + 1):
            c = c.detach().requires_grad_(True)
            soft, passed = self._evaluate(c, batch)
            (grad,) = torch.autograd.grad(soft.sum(), c)
            with torch.no_grad():
                hit = passed & active
                new = hit.any(dim=1) & ~found[alive]
                first = hit.to(torch.int8).argmax(dim=1)
                witness[alive[new]] = c.detach()[new, first[new]]
                found[alive] |= new
                improved = soft < best
                best = torch.where(improved, soft, best)
                since = torch.where(improved, 0, since + 1)
                active &= ~((soft < 1.0 - self.beta) | (since >= s.patience))
                keep = active.any(dim=1) & ~found[alive]
                if step == s.max_steps or not bool(keep.any()):
                    break
                if not bool(keep.all()):  # drop finished units from the batch
                    sel = torch.nonzero(keep).squeeze(1)
                    alive, batch = alive[sel], batch.take(sel)
                    c, grad, m1, m2 = c[sel], grad[sel], m1[sel], m2[sel]
                    best, since, active, lo, hi = (
                        best[sel],
                        since[sel],
                        active[sel],
                        lo[sel],
                        hi[sel],
                    )
                t = step + 1
                m1 = torch.where(active[..., None], b1 * m1 + (1 - b1) * grad, m1)
                m2 = torch.where(active[..., None], b2 * m2 + (1 - b2) * grad * grad, m2)
                update = (m1 / (1 - b1**t)) / ((m2 / (1 - b2**t)).sqrt() + _ADAM_EPS)
                moved = torch.clamp(c - s.lr * update, min=lo, max=hi)
                c = torch.where(active[..., None], moved, c)
        return found, witness


def _first_passing(
    c: torch.Tensor, score: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per unit, whether any point of ``c`` ``(b, S, K)`` passes and the first that does."""
    ok = passes(score, beta)
    found = ok.any(dim=1)
    first = ok.to(torch.int8).argmax(dim=1)
    witness = c[torch.arange(c.shape[0], device=c.device), first].clone()
    witness[~found] = torch.nan
    return found, witness


@dataclass(frozen=True)
class _Batch(BatchRows):
    """Per-unit tensors of one batch of units (float64 on the checker's device)."""

    mean: torch.Tensor
    comps: torch.Tensor
    labels: torch.Tensor
    weight: torch.Tensor
    sign: torch.Tensor
    n_present: torch.Tensor
    soft_weight: torch.Tensor
    soft_const: torch.Tensor
