"""CONSIGN's default ``"lines"`` membership strategy on one batch of boxes.

:func:`lines_search` hard-checks the box centre, its ``2^K`` vertices, the units'
Latin-hypercube points and the caller's hints on the reduced problem of
:mod:`.consign_linesearch` (the pixels whose label can change in the box), then runs coordinate
ascent on the hard score from the ``n_starts`` best, by line scans along the axes and fixed
oblique directions. A unit stops as soon as one point passes. It returns ``(found, witness)``
*before* verification: the caller re-checks every witness on the full image.
"""

from __future__ import annotations

import numpy as np
import torch

from .consign_linesearch import (
    Reduced,
    oblique_directions,
    passes,
    reduce_boxes,
    vertex_fractions,
)
from .consign_search_settings import StrategyParams
from .consign_unit_batch import UnitBatch


def lines_search(
    batch: UnitBatch,
    lhs: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    hints: np.ndarray | None,
    params: StrategyParams,
) -> tuple[np.ndarray, np.ndarray]:
    """``(found (b,), witness (b, K))`` for boxes ``[lo, hi]`` ``(b, K)`` of the batch's units.

    ``lhs`` ``(b, n_lhs, K)`` are the units' Latin-hypercube fractions of the box; ``hints``
    ``(b, K)`` extra points (clamped into the box, NaN rows replaced by the centre). Witnesses are
    NaN where none was found.
    """
    s, beta, dev = params.settings, params.beta, lo.device
    red = reduce_boxes(
        batch.mean, batch.comps, batch.labels, batch.weight, lo, hi, params.n_classes
    )
    b, k = lo.shape
    fixed = torch.cat(
        [
            torch.full((1, k), 0.5, dtype=torch.float64, device=dev),
            vertex_fractions(k, lo.dtype, dev),
        ]
    )
    frac = torch.cat([fixed.expand(b, -1, -1), lhs], 1)
    cands = lo[:, None, :] + frac * (hi - lo)[:, None, :]
    cands = torch.clamp(cands, min=lo[:, None, :], max=hi[:, None, :])  # rounding at vertices
    if hints is not None:
        h = torch.from_numpy(hints).to(dev)
        h = torch.where(torch.isnan(h), (lo + hi) / 2.0, torch.clamp(h, min=lo, max=hi))
        cands = torch.cat([h[:, None, :], cands], dim=1)
    score = _reduced_scores(red, cands, params.budget)
    found, witness = _first_passing(cands, score, beta)
    todo = torch.nonzero(~found).squeeze(1)
    if todo.numel() and s.sweeps:
        top = score[todo].topk(min(s.n_starts, cands.shape[1]), dim=1).indices
        starts = cands[todo[:, None], top]
        ok, c = _ascend(
            red.take(todo), starts, score[todo[:, None], top], lo[todo], hi[todo], s.sweeps, beta
        )
        found[todo], witness[todo] = ok, c
    return found.cpu().numpy(), witness.cpu().numpy()


def _reduced_scores(red: Reduced, c: torch.Tensor, budget: int) -> torch.Tensor:
    """Hard scores ``(b, C)`` of points ``c`` ``(b, C, K)``, in chunks of the budget."""
    b, n = c.shape[:2]
    per_point = b * red.mean.shape[1] * red.mean.shape[2]
    chunk = max(1, budget // max(1, per_point))
    return torch.cat([red.score(c[:, i : i + chunk]) for i in range(0, n, chunk)], dim=1)


def _ascend(
    red: Reduced,
    c: torch.Tensor,
    cur: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    sweeps: int,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinate ascent by line scans from starts ``c`` ``(b, S, K)`` with scores ``cur``.

    Returns ``(found (b,), witness (b, K))``; a unit stops when a start passes or a whole
    sweep improves none of its starts.
    """
    n_units, k, dev = c.shape[0], c.shape[2], c.device
    found = torch.zeros(n_units, dtype=torch.bool, device=dev)
    witness = torch.full((n_units, k), torch.nan, dtype=torch.float64, device=dev)
    alive = torch.arange(n_units, device=dev)
    dirs = oblique_directions(k, c.dtype, dev)
    for _ in range(sweeps):
        gained = torch.zeros(alive.numel(), dtype=torch.bool, device=dev)
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
            ok, wit = _first_passing(c, cur, beta)
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
