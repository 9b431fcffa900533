"""COAT's differentiable miscoverage loss (docs/methods.md §4.2), in torch.

``M_soft = sigmoid((g(p) - g(tau)) / T)``, ``TPR_soft = sum(M_soft * Y) / (sum(Y) + eps)`` per
unit, and the loss is the batch mean of ``(TPR_soft - (1 - alpha))**2``: small only when every
unit is near its target. As ``T -> 0`` the soft TPR tends to the hard TPR of ``{p >= tau}``.

``g`` is the identity in the paper (``score_space="probability"``, the default, T = 0.05).
With ``"logit"`` (a project option, T = 0.5 by default) ``g`` is the logit: the sets
``{p >= tau}`` are the same, but the loss can tell thresholds of 1e-3 and 1e-2 apart, which
matters when a model gives faint structures probabilities near 0 (the bundled model does).
"""

from __future__ import annotations

import torch

EPSILON = 1e-6
LOGIT_CLAMP = 1e-6


def to_score_space(x: torch.Tensor, score_space: str) -> torch.Tensor:
    """``g(x)``: identity for ``"probability"``, the (clamped) logit for ``"logit"``."""
    if score_space == "probability":
        return x
    if score_space == "logit":
        return torch.logit(x.clamp(LOGIT_CLAMP, 1.0 - LOGIT_CLAMP))
    raise ValueError(f"score_space must be 'probability' or 'logit', got {score_space!r}")


def soft_tpr(
    probs: torch.Tensor,
    tau: torch.Tensor,
    truth: torch.Tensor,
    temperature: float,
    score_space: str = "probability",
) -> torch.Tensor:
    """Soft TPR per unit. ``probs`` and ``truth`` are (B, ...) maps, ``tau`` is (B,)."""
    shape = (-1,) + (1,) * (probs.dim() - 1)
    g_p, g_tau = to_score_space(probs, score_space), to_score_space(tau, score_space)
    soft_mask = torch.sigmoid((g_p - g_tau.reshape(shape)) / temperature)
    dims = tuple(range(1, probs.dim()))
    return (soft_mask * truth).sum(dims) / (truth.sum(dims) + EPSILON)


def coat_loss(
    probs: torch.Tensor,
    tau: torch.Tensor,
    truth: torch.Tensor,
    alpha: torch.Tensor | float,
    temperature: float = 0.05,
    score_space: str = "probability",
) -> torch.Tensor:
    """Mean squared deviation of the soft TPR from ``1 - alpha`` (alpha scalar or per unit)."""
    target = 1.0 - torch.as_tensor(alpha, dtype=probs.dtype, device=probs.device)
    tpr = soft_tpr(probs, tau, truth, temperature, score_space)
    return ((tpr - target) ** 2).mean()
