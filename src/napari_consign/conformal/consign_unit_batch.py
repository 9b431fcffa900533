"""Per-unit tensors of a batch of CONSIGN membership checks, and the scores of points.

:class:`UnitBatch` holds, for a batch of units, the label margins ``z_l = sigma_l - sigma_0``
(``l >= 1``) of the decomposition and the ground-truth weights of the macro recall.
:func:`score_points` gives the hard pass flags of coefficient points and, optionally, the
differentiable soft loss the ``"adam"`` strategy descends.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .consign_linesearch import BatchRows, passes, predict


@dataclass(frozen=True)
class UnitBatch(BatchRows):
    """Per-unit tensors of one batch of units (float64 on the checker's device)."""

    mean: torch.Tensor
    comps: torch.Tensor
    labels: torch.Tensor
    weight: torch.Tensor
    sign: torch.Tensor
    n_present: torch.Tensor
    soft_weight: torch.Tensor
    soft_const: torch.Tensor


def score_points(
    c: torch.Tensor,
    batch: UnitBatch,
    n_classes: int,
    beta: float,
    temperature: float,
    soft: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Soft loss (differentiable; None unless ``soft``) and hard pass flags of points ``c``
    (b, P, K).

    Works on the label differences ``z_l = sigma_l - sigma_0`` (``l >= 1``): argmax and
    softmax over ``[0, z]`` equal those over ``sigma``; the softmax runs at ``temperature``.
    """
    b, p = c.shape[:2]
    n_diff = n_classes - 1
    z = torch.baddbmm(batch.mean[:, None, :], c, batch.comps).view(b, p, n_diff, -1)
    pred = predict(z)
    match = pred == batch.labels[:, None, :]
    passed = passes((match * batch.weight[:, None, :]).sum(dim=2), beta)
    if not soft:
        return None, passed
    zt = z / temperature
    if n_diff == 1:  # log softmax at the GT label: -softplus(+-z/T)
        logq = -torch.nn.functional.softplus(batch.sign[:, None, :] * zt[:, :, 0])
    else:
        padded = torch.cat([torch.zeros_like(zt[:, :, :1]), zt], dim=2)
        index = batch.labels[:, None, None, :].expand(b, p, 1, -1)
        logq = padded.gather(2, index).squeeze(2) - torch.logsumexp(padded, dim=2)
    recall = (logq.exp() * batch.soft_weight[:, None, :]).sum(dim=2) + batch.soft_const[:, None]
    return 1.0 - recall / batch.n_present[:, None], passed
