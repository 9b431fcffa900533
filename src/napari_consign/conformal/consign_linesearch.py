"""CONSIGN's fast box search: the hard beta-score maximised over a box by exact line scans.

For one unit and one box ``[lo, hi]`` of coefficients ``c``, the question is whether some
``c`` gives ``score(Y, P(mu + U_K c)) > beta``. Two facts make this cheap:

* **Reduction.** Per pixel, the box extremes of the label margins ``z_l = sigma_l - sigma_0``
  (a closed form, :func:`box_margins`) say which labels may win somewhere in the box. A pixel
  where only one label may win has the same prediction everywhere in the box: its share of the
  score is a constant (``base``). Only the *flexible* pixels, typically the few along the
  boundary, enter the search, gathered into a small padded problem (:class:`Reduced`).
* **Line scans.** Along a line ``c + t d``, each pixel's label ``y`` wins on an interval of
  ``t`` (the intersection of the half-lines ``sigma_y(t) > sigma_l(t)``), so the score along
  the line is a sum of interval indicators. It is evaluated at ``n`` + 1 evenly spaced points
  of the line's chord through the box with one scatter-add and one cumulative sum per line,
  ``O(pixels + n)``, instead of ``n`` full evaluations.

:func:`.consign_lines.lines_search` certifies a batch of boxes with these tools: it
hard-checks the centre, the ``2^K`` vertices (``K <= 6``), space-filling points and the
caller's hints, then runs coordinate ascent from the best few along the ``K`` axes and ``K``
fixed oblique directions, moving to the best scanned point of each line when it is better,
until a start passes, a sweep brings no gain, or ``sweeps`` are done. Every returned witness
is re-checked on the full problem, so "found" always means a point of the box whose hard
score exceeds beta.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .set_metrics import SCORE_TOLERANCE

#: Relative rounding slack of the closed-form margin extremes (a pixel within it of a tie is
#: treated as flexible, so the reduction never fixes a pixel that can change).
MARGIN_SLACK = 1e-9


def box_margins(
    mean: torch.Tensor, comps: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower and upper bounds ``(b, n_diff * P)`` of the margins ``mean + c @ comps`` over the box.

    ``mean`` is ``(b, n_diff * P)``, ``comps`` ``(b, K, n_diff * P)``, ``lo``/``hi`` ``(b, K)``;
    the bounds include :data:`MARGIN_SLACK`.
    """
    centre = mean + torch.einsum("bk,bkd->bd", (lo + hi) / 2.0, comps)
    spread = torch.einsum("bk,bkd->bd", (hi - lo) / 2.0, comps.abs())
    slack = MARGIN_SLACK * (centre.abs() + spread + 1.0)
    return centre - spread - slack, centre + spread + slack


def may_win(z_min: torch.Tensor, z_max: torch.Tensor, n_classes: int) -> torch.Tensor:
    """``(b, L, P)``: label ``l`` may win at the pixel somewhere in the box (a relaxation).

    Label ``l >= 1`` wins only where ``z_l > 0``; background only where every ``z_l <= 0``.
    """
    b = z_min.shape[0]
    z_min = z_min.view(b, n_classes - 1, -1)
    z_max = z_max.view(b, n_classes - 1, -1)
    return torch.cat([(z_min <= 0).all(dim=1, keepdim=True), z_max > 0], dim=1)


def predict(z: torch.Tensor) -> torch.Tensor:
    """Labels from margins ``z`` ``(..., n_diff, P)``: argmax of ``[0, z]``, ties to the lowest."""
    n_diff = z.shape[-2]
    if n_diff == 1:
        return (z[..., 0, :] > 0).to(torch.int64)
    best = torch.zeros_like(z[..., 0, :])
    pred = torch.zeros(best.shape, dtype=torch.int64, device=z.device)
    for j in range(n_diff):
        better = z[..., j, :] > best
        pred = torch.where(better, j + 1, pred)
        best = torch.where(better, z[..., j, :], best)
    return pred


class BatchRows:
    """Mixin for frozen dataclasses of per-unit tensors: :meth:`take` selects units."""

    def take(self, index: torch.Tensor):
        """The same tensors for the units ``index`` (first axis)."""
        return type(self)(*(getattr(self, f)[index] for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class Reduced(BatchRows):
    """The flexible pixels of a batch of boxes (padded to the batch's largest count).

    ``mean`` ``(b, n_diff, F)`` and ``comps`` ``(b, K, n_diff, F)`` are the margins' mean and
    components there, ``labels`` ``(b, F)`` the truth, ``weight`` ``(b, F)`` each pixel's share
    of the score (0 for padding) and ``base`` ``(b,)`` the score of the fixed pixels.
    """

    mean: torch.Tensor
    comps: torch.Tensor
    labels: torch.Tensor
    weight: torch.Tensor
    base: torch.Tensor

    def margins(self, c: torch.Tensor) -> torch.Tensor:
        """Margins ``(b, S, n_diff, F)`` at points ``c`` ``(b, S, K)``."""
        return self.mean[:, None] + torch.einsum("bsk,bkdf->bsdf", c, self.comps)

    def score(self, c: torch.Tensor) -> torch.Tensor:
        """Hard beta-score ``(b, S)`` at points ``c`` ``(b, S, K)`` of the box."""
        match = predict(self.margins(c)) == self.labels[:, None, :]
        return (match * self.weight[:, None, :]).sum(dim=2) + self.base[:, None]

    def line_scan(
        self,
        c: torch.Tensor,
        d: torch.Tensor,
        lo: torch.Tensor,
        hi: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The best point of each line ``c + t d`` inside the box, exactly.

        ``c`` ``(b, S, K)``, ``d`` ``(K,)``, box ``lo``/``hi`` ``(b, K)``. Each pixel's truth
        label wins on an interval of ``t``; sorting the interval ends gives the score on every
        piece of the chord. Returns the midpoint of the best piece ``(b, S, K)`` and its score
        ``(b, S)`` (``-inf`` where the chord is a single point).
        """
        b, s = c.shape[:2]
        # chord of the box along d: t in [t0, t1]
        step_lo = (lo[:, None, :] - c) / torch.where(d == 0, 1.0, d)
        step_hi = (hi[:, None, :] - c) / torch.where(d == 0, 1.0, d)
        moving = d != 0
        inf = torch.tensor(torch.inf, dtype=c.dtype, device=c.device)
        t0 = torch.where(moving, torch.minimum(step_lo, step_hi), -inf).amax(dim=2)
        t1 = torch.where(moving, torch.maximum(step_lo, step_hi), inf).amin(dim=2)
        t0 = torch.minimum(t0, torch.zeros_like(t0))  # c lies in the box, so t0 <= 0 <= t1
        t1 = torch.maximum(t1, torch.zeros_like(t1))
        width = t1 - t0
        # per pixel, the interval of t where its truth label wins: sigma_y - sigma_l > 0
        z = self.margins(c)
        sig = torch.cat([torch.zeros_like(z[:, :, :1]), z], dim=2)  # (b, S, L, F)
        zero = torch.zeros_like(self.mean[:, :1])
        slope = torch.einsum("k,bkdf->bdf", d, self.comps)
        grad = torch.cat([zero, slope], dim=1)[:, None]  # (b, 1, L, F)
        index = self.labels[:, None, None, :].expand(b, s, 1, -1)
        e = sig.gather(2, index) - sig  # (b, S, L, F)
        f = grad.gather(2, index[:, :1]) - grad
        safe = torch.where(f == 0, 1.0, f)
        cross = -e / safe
        lower = torch.where(f > 0, cross, -inf).amax(dim=2)
        upper = torch.where(f < 0, cross, inf).amin(dim=2)
        n_lab = sig.shape[2]
        later = (
            torch.arange(n_lab, device=c.device)[None, None, :, None]
            >= self.labels[:, None, None, :]
        )
        flat_ok = (e > 0) | ((e == 0) & later)
        empty = ((f == 0) & ~flat_ok).any(dim=2) | (lower >= upper)
        # exact maximum along the line: sweep the interval ends in order (sentinels at t0, t1);
        # between two consecutive distinct ends the score is constant
        valid = ~empty & (self.weight[:, None, :] > 0)
        start = torch.where(valid, torch.maximum(lower, t0[..., None]), t0[..., None])
        end = torch.where(valid, torch.minimum(upper, t1[..., None]), t0[..., None])
        w = torch.where(valid & (start < end), self.weight[:, None, :], 0.0)
        pos = torch.cat([t0[..., None], start, end, t1[..., None]], dim=2)
        zeros = torch.zeros_like(t0[..., None])
        wts = torch.cat([zeros, w, -w, zeros], dim=2)
        pos, order = pos.sort(dim=2)
        level = wts.gather(2, order).cumsum(dim=2)[..., :-1] + self.base[:, None, None]
        gap = pos[..., 1:] > pos[..., :-1]
        level = torch.where(gap, level, -inf)
        best, i = level.max(dim=2)
        t = (pos.gather(2, i[..., None]) + pos.gather(2, i[..., None] + 1)).squeeze(2) / 2.0
        point = torch.clamp(c + t[..., None] * d, min=lo[:, None, :], max=hi[:, None, :])
        return point, torch.where(width > 0, best, -inf)


def reduce_boxes(
    mean: torch.Tensor,
    comps: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    n_classes: int,
) -> Reduced:
    """The flexible-pixel problem of each box (see the module docstring).

    ``mean`` ``(b, n_diff * P)`` and ``comps`` ``(b, K, n_diff * P)`` are label-difference
    margins, ``labels`` ``(b, P)`` the truths and ``weight`` ``(b, P)`` each pixel's share of the
    macro recall.
    """
    b, k = comps.shape[:2]
    n_diff = n_classes - 1
    z_min, z_max = box_margins(mean, comps, lo, hi)
    may = may_win(z_min, z_max, n_classes)
    flexible = may.sum(dim=1) > 1
    fixed_right = ~flexible & may.gather(1, labels[:, None, :]).squeeze(1)
    base = (weight * fixed_right).sum(dim=1)
    count = flexible.sum(dim=1)
    width = max(1, int(count.max()))
    # flexible pixels first (stable), then pad with weight 0
    order = torch.argsort((~flexible).to(torch.int8), dim=1, stable=True)[:, :width]
    keep = torch.arange(width, device=mean.device)[None, :] < count[:, None]
    gather_d = order[:, None, :].expand(b, n_diff, width)
    return Reduced(
        mean=mean.view(b, n_diff, -1).gather(2, gather_d),
        comps=comps.view(b, k, n_diff, -1).gather(3, gather_d[:, None].expand(b, k, n_diff, width)),
        labels=labels.gather(1, order),
        weight=torch.where(keep, weight.gather(1, order), 0.0),
        base=base,
    )


def oblique_directions(k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``K`` axes then ``K`` fixed oblique unit directions (``K = 1``: the axis only).

    The oblique ones are Gaussian directions from a fixed generator: the same for every unit
    and call, so the search is one deterministic procedure.
    """
    axes = torch.eye(k, dtype=dtype, device=device)
    if k == 1:
        return axes
    gen = torch.Generator().manual_seed(20260)
    oblique = torch.randn(k, k, generator=gen, dtype=torch.float64)
    oblique /= oblique.norm(dim=1, keepdim=True)
    return torch.cat([axes, oblique.to(dtype=dtype, device=device)])


def vertex_fractions(k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """All ``2^K`` vertices of the unit cube ``(2^K, K)`` (empty for ``K > 6``)."""
    if k > 6:
        return torch.zeros((0, k), dtype=dtype, device=device)
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=k)), dtype=dtype, device=device)


def passes(score: torch.Tensor, beta: float) -> torch.Tensor:
    """Strict beta-equality with the project's rounding tolerance."""
    return score > beta + SCORE_TOLERANCE
