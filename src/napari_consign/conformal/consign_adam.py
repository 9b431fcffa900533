"""CONSIGN's ``"adam"`` membership strategy: the authors' procedure (docs/methods.md §5.3).

:func:`adam_search` hard-checks every Latin-hypercube point of each box, then refines the
``n_starts`` with the best soft per-class recall (softmax at ``temperature``) by projected Adam
(``lr``, ``patience``, at most ``max_steps``), hard-checking every visited point. It is kept
as the reference the fast ``"lines"`` strategy is measured against
(``benchmarks/bench_consign_fidelity.py``) and returns ``(found, witness)`` *before*
verification: the caller re-checks every witness on the full image.
"""

from __future__ import annotations

import numpy as np
import torch

from .consign_search_settings import StrategyParams
from .consign_unit_batch import UnitBatch, score_points

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


def adam_search(
    batch: UnitBatch,
    lhs: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    params: StrategyParams,
) -> tuple[np.ndarray, np.ndarray]:
    """``(found (b,), witness (b, K))`` for boxes ``[lo, hi]`` ``(b, K)`` of the batch's units.

    ``lhs`` ``(b, n_lhs, K)`` are the units' Latin-hypercube fractions of the box. Witnesses are
    NaN where none was found.
    """
    s, beta, n_classes, dev = params.settings, params.beta, params.n_classes, lo.device
    width = hi - lo
    b, k = lo.shape
    n_pixels = batch.labels.shape[1]
    found = torch.zeros(b, dtype=torch.bool, device=dev)
    witness = torch.full((b, k), torch.nan, dtype=torch.float64, device=dev)
    soft_all = torch.empty(b, s.n_lhs, dtype=torch.float64, device=dev)
    chunk = max(1, params.budget // max(1, b * (n_classes - 1) * n_pixels))
    with torch.no_grad():
        for p0 in range(0, s.n_lhs, chunk):
            c = lo[:, None, :] + lhs[:, p0 : p0 + chunk] * width[:, None, :]
            soft, passed = score_points(c, batch, n_classes, beta, s.temperature)
            soft_all[:, p0 : p0 + chunk] = soft
            new = passed.any(dim=1) & ~found
            first = passed.to(torch.int8).argmax(dim=1)
            witness[new] = c[new, first[new]]
            found |= new
    todo = torch.nonzero(~found).squeeze(1)
    if todo.numel():
        best = soft_all[todo].topk(s.n_starts, dim=1, largest=False).indices
        starts = lo[todo, None, :] + lhs[todo[:, None], best] * width[todo, None, :]
        ok, wit = _optimise(batch.take(todo), starts, lo[todo], hi[todo], params)
        found[todo], witness[todo] = ok, wit
    return found.cpu().numpy(), witness.cpu().numpy()


def _optimise(
    batch: UnitBatch,
    c: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    params: StrategyParams,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected Adam from every start; ``(found, witness)`` per unit."""
    s, beta, n_classes = params.settings, params.beta, params.n_classes
    b1, b2 = _ADAM_BETAS
    n_units, k, dev = c.shape[0], c.shape[2], c.device
    found = torch.zeros(n_units, dtype=torch.bool, device=dev)
    witness = torch.full((n_units, k), torch.nan, dtype=torch.float64, device=dev)
    alive = torch.arange(n_units, device=dev)  # units still searching
    lo, hi = lo[:, None, :], hi[:, None, :]
    m1, m2 = torch.zeros_like(c), torch.zeros_like(c)
    best = torch.full(c.shape[:2], torch.inf, dtype=torch.float64, device=dev)
    since = torch.zeros(c.shape[:2], dtype=torch.int64, device=dev)
    active = torch.ones(c.shape[:2], dtype=torch.bool, device=dev)
    for step in range(s.max_steps + 1):
        c = c.detach().requires_grad_(True)
        soft, passed = score_points(c, batch, n_classes, beta, s.temperature)
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
            active &= ~((soft < 1.0 - beta) | (since >= s.patience))
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
