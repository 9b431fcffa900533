"""COAT's differentiable miscoverage loss (METHODS.md 4.2), in torch.

``M_soft = sigmoid((p - tau) / T)``, ``TPR_soft = sum(M_soft * Y) / (sum(Y) + eps)`` per unit,
and the loss is the batch mean of ``(TPR_soft - (1 - alpha))**2``: small only when every unit is
near its target. As ``T -> 0`` the soft TPR tends to the hard TPR of ``{p >= tau}``.
"""

from __future__ import annotations

import torch

EPSILON = 1e-6


def soft_tpr(
    probs: torch.Tensor, tau: torch.Tensor, truth: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Soft TPR per unit. ``probs`` and ``truth`` are (B, ...) maps, ``tau`` is (B,)."""
    shape = (-1,) + (1,) * (probs.dim() - 1)
    soft_mask = torch.sigmoid((probs - tau.reshape(shape)) / temperature)
    dims = tuple(range(1, probs.dim()))
    return (soft_mask * truth).sum(dims) / (truth.sum(dims) + EPSILON)


def coat_loss(
    probs: torch.Tensor,
    tau: torch.Tensor,
    truth: torch.Tensor,
    alpha: torch.Tensor | float,
    temperature: float = 0.05,
) -> torch.Tensor:
    """Mean squared deviation of the soft TPR from ``1 - alpha`` (alpha scalar or per unit)."""
    target = 1.0 - torch.as_tensor(alpha, dtype=probs.dtype, device=probs.device)
    return ((soft_tpr(probs, tau, truth, temperature) - target) ** 2).mean()
