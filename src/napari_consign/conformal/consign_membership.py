"""CONSIGN's membership check: is the ground truth beta-equal to some prediction in the box?

METHODS.md 5.3, batched over units and starts in torch (float64, CPU or CUDA). For each unit
and box ``[A, B]``:

1. ``n_lhs`` Latin-hypercube points (seeded per unit, fixed in box coordinates, so the check is
   the same deterministic procedure at every lambda) are scaled into the box; each is checked
   with the hard beta-score first (any point of the box that passes is a valid witness), and
   the ``n_starts`` best by the soft surrogate become starts;
2. from all starts at once: Adam (lr 1) on the soft per-class recall surrogate
   ``L_soft`` (softmax at temperature 1e-4), projection by clamping to the box after every
   step, a start stops when ``L_soft < 1 - beta`` or after ``patience`` steps without
   improvement, or at ``max_steps``; every visited point is hard-checked, and a unit is
   certified as soon as one passes.

Before any of this, a closed-form bound rules out boxes in which no point can pass: per
pixel, a label can win somewhere in the box only if its margin over background can reach the
right sign (exact for two classes, a relaxation for more), so the fraction of each label's
ground-truth pixels where it may win bounds that label's recall. If the bound on the macro
recall is at most beta, no witness exists and the search is skipped: the result is the same,
and images the model cannot reach (a faint lesion it never sees) cost one pass, not a search at
every lambda up to lambda_max. A certificate is a witness ``c`` in the box, so "certified"
implies "in the set": the check may miss members, never invent them. The default step cap is
1,000 (the authors' 10,000; the patience rule stops almost every start far earlier).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import qmc

from .consign_decomposition import Decomposition
from .errors import ConformalInputError
from .set_metrics import SCORE_TOLERANCE, check_beta

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_SOFT_EPS = 1e-6  # smoothing of the soft per-class recall (METHODS.md 5.3)


@dataclass(frozen=True)
class SearchSettings:
    """Settings of the multi-start search (defaults: the authors' medical settings)."""

    n_lhs: int = 1000
    n_starts: int = 10
    lr: float = 1.0
    max_steps: int = 1000
    patience: int = 50
    temperature: float = 1e-4
    #: skip the search when the closed-form recall bound already rules the box out
    prune: bool = True
    #: float64 elements of one (units x points x D) temporary; None: 2^22 on CPU, 2^26 on CUDA
    max_elements: int | None = None

    def __post_init__(self) -> None:
        if self.n_lhs < 1 or self.n_starts < 1 or self.n_starts > self.n_lhs:
            raise ConformalInputError("need 1 <= n_starts <= n_lhs Latin-hypercube points")
        if self.max_steps < 0 or self.patience < 1 or self.temperature <= 0 or self.lr <= 0:
            raise ConformalInputError("max_steps >= 0, patience >= 1, lr > 0, temperature > 0")
        if self.max_elements is not None and self.max_elements < 1:
            raise ConformalInputError("max_elements must be positive (or None for the default)")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``torch.device`` for ``device`` (``"auto"``: CUDA when present); clear error otherwise."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConformalInputError(
            f"unknown torch device {device!r}; use cpu, cuda or auto"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConformalInputError(f"device {device!r} requested but CUDA is not available; use cpu")
    return dev


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
        self.device = resolve_device(device)
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
        units = np.asarray(units, dtype=np.int64).reshape(-1)
        lower = np.asarray(lower, dtype=np.float64).reshape(units.size, self.k)
        upper = np.asarray(upper, dtype=np.float64).reshape(units.size, self.k)
        out = np.zeros(units.size, dtype=bool)
        todo = np.arange(units.size)
        if self.settings.prune:
            todo = todo[self.possible(units, lower, upper)]
        per_unit = (self.n_classes - 1) * self.n_pixels * self.settings.n_starts
        step = max(1, self._budget // per_unit)
        for lo in range(0, todo.size, step):
            sl = todo[lo : lo + step]
            out[sl] = self._check_batch(units[sl], lower[sl], upper[sl])
        return out

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
        centre = batch.mean + torch.einsum("bk,bkd->bd", (lo + hi) / 2.0, batch.comps)
        spread = torch.einsum("bk,bkd->bd", (hi - lo) / 2.0, batch.comps.abs())
        # rounding slack: count a pixel as "may win" when it is within it of the boundary
        slack = 1e-9 * (centre.abs() + spread + 1.0)
        b = units.size
        z_max = (centre + spread + slack).view(b, self.n_classes - 1, -1)
        z_min = (centre - spread - slack).view(b, self.n_classes - 1, -1)
        may = torch.cat([(z_min <= 0).all(dim=1, keepdim=True), z_max > 0], dim=1)
        at_truth = may.gather(1, batch.labels[:, None, :]).squeeze(1).to(torch.float64)
        hits = torch.bmm(at_truth[:, None, :], batch.onehot).squeeze(1)
        bound = (hits * batch.inv_count).sum(dim=1) / batch.n_present
        return (bound + SCORE_TOLERANCE).cpu().numpy()

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
        if n_diff == 1:
            pred = (z[:, :, 0] > 0).to(torch.int64)
        else:  # running maximum, ties to the lowest label
            best = torch.zeros_like(z[:, :, 0])
            pred = torch.zeros(best.shape, dtype=torch.int64, device=z.device)
            for j in range(n_diff):
                better = z[:, :, j] > best
                pred = torch.where(better, j + 1, pred)
                best = torch.where(better, z[:, :, j], best)
        match = (pred == batch.labels[:, None, :]).to(torch.float64)
        hits = torch.bmm(match, batch.onehot)
        score = (hits * batch.inv_count[:, None, :]).sum(dim=2) / batch.n_present[:, None]
        passed = score > self.beta + SCORE_TOLERANCE
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
        return _Batch(
            mean=(mean[:, 1:] - mean[:, :1]).reshape(b, -1),
            comps=(comps[:, :, 1:] - comps[:, :, :1]).reshape(b, self.k, -1),
            labels=labels,
            onehot=torch.nn.functional.one_hot(labels, n_lab).to(torch.float64),
            sign=1.0 - 2.0 * labels.to(torch.float64),
            inv_count=self._inv_count[idx],
            n_present=self._n_present[idx],
            soft_weight=self._soft_weight[idx].gather(1, labels),
            soft_const=self._soft_const[idx],
        )

    def _check_batch(self, units: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
        s = self.settings
        batch = self._batch(units)
        lo = torch.from_numpy(lower).to(self.device)
        hi = torch.from_numpy(upper).to(self.device)
        width = hi - lo
        lhs = self._lhs[torch.from_numpy(units).to(self.device)]
        b = units.size
        certified = torch.zeros(b, dtype=torch.bool, device=self.device)
        soft_all = torch.empty(b, s.n_lhs, dtype=torch.float64, device=self.device)
        chunk = max(1, self._budget // max(1, b * (self.n_classes - 1) * self.n_pixels))
        with torch.no_grad():
            for p0 in range(0, s.n_lhs, chunk):
                c = lo[:, None, :] + lhs[:, p0 : p0 + chunk] * width[:, None, :]
                soft, passed = self._evaluate(c, batch)
                soft_all[:, p0 : p0 + chunk] = soft
                certified |= passed.any(dim=1)
        todo = torch.nonzero(~certified).squeeze(1)
        if todo.numel() and s.max_steps >= 0:
            best = soft_all[todo].topk(s.n_starts, dim=1, largest=False).indices
            starts = lo[todo, None, :] + lhs[todo[:, None], best] * width[todo, None, :]
            found = self._optimise(batch.take(todo), starts, lo[todo], hi[todo])
            certified[todo] = found
        return certified.cpu().numpy()

    def _optimise(
        self, batch: _Batch, c: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
    ) -> torch.Tensor:
        """Projected Adam from every start; returns which units found a witness."""
        s = self.settings
        b1, b2 = _ADAM_BETAS
        n_units = c.shape[0]
        found = torch.zeros(n_units, dtype=torch.bool, device=self.device)
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
                found[alive] |= (passed & active).any(dim=1)
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
        return found


@dataclass(frozen=True)
class _Batch:
    """Per-unit tensors of one batch of units (float64 on the checker's device)."""

    mean: torch.Tensor
    comps: torch.Tensor
    labels: torch.Tensor
    onehot: torch.Tensor
    sign: torch.Tensor
    inv_count: torch.Tensor
    n_present: torch.Tensor
    soft_weight: torch.Tensor
    soft_const: torch.Tensor

    def take(self, index: torch.Tensor) -> _Batch:
        return _Batch(*(getattr(self, f)[index] for f in self.__dataclass_fields__))
