"""COAT's soft-TPR loss and AT's oracle thresholds (docs/methods.md §3, 4.2; oracle tests 5, 6)."""

import numpy as np
import pytest
import torch

from napari_consign.conformal.coat_loss import coat_loss, soft_tpr
from napari_consign.conformal.oracle import oracle_threshold, sorted_gt_scores


def test_soft_tpr_tends_to_hard_tpr():
    rng = np.random.default_rng(0)
    p = torch.tensor(rng.uniform(size=(6, 10, 10)), dtype=torch.float64)
    y = torch.tensor(rng.uniform(size=(6, 10, 10)) > 0.5, dtype=torch.float64)
    tau = torch.tensor(rng.uniform(0.2, 0.8, 6), dtype=torch.float64)
    hard = ((p >= tau[:, None, None]) * y).sum((1, 2)) / y.sum((1, 2))
    torch.testing.assert_close(soft_tpr(p, tau, y, 1e-5), hard, atol=1e-6, rtol=0)
    assert (soft_tpr(p, tau, y, 0.05) - hard).abs().max() > 1e-3  # T matters


def test_vectorised_equals_looped():
    rng = np.random.default_rng(1)
    p = torch.tensor(rng.uniform(size=(5, 7, 7)))
    y = torch.tensor(rng.uniform(size=(5, 7, 7)) > 0.4, dtype=p.dtype)
    tau = torch.tensor(rng.uniform(size=5))
    alpha = torch.tensor(rng.uniform(0.05, 0.5, 5))
    looped = torch.stack(
        [coat_loss(p[i : i + 1], tau[i : i + 1], y[i : i + 1], alpha[i]) for i in range(5)]
    ).mean()
    torch.testing.assert_close(coat_loss(p, tau, y, alpha), looped)


def test_gradient_sign():
    # p = 0.5, Y = 1, tau = 0.7: the soft TPR is below 0.9, raising tau lowers it further.
    p, y = torch.full((1, 4, 4), 0.5), torch.ones(1, 4, 4)
    tau = torch.tensor([0.7], requires_grad=True)
    coat_loss(p, tau, y, 0.1).backward()
    assert tau.grad.item() > 0


def test_oracle_literal():
    d = sorted_gt_scores(np.array([0.1, 0.2, 0.3, 0.4]), np.ones(4))
    assert oracle_threshold(d, 0.5) == 0.3


def test_oracle_is_the_largest_feasible_threshold():
    rng = np.random.default_rng(2)
    for _ in range(50):
        s, m = rng.uniform(size=40), rng.uniform(size=40) > 0.5
        m[0] = True
        alpha = rng.uniform(0.05, 0.6)
        t = float(oracle_threshold(sorted_gt_scores(s, m), alpha))

        def tpr(tau, s=s, m=m):
            return (s[m] >= tau).mean()

        assert tpr(t) >= 1 - alpha - 1e-12
        assert tpr(np.nextafter(t, 2)) < 1 - alpha


def test_oracle_needs_a_structure():
    with pytest.raises(ValueError, match="non-empty"):
        oracle_threshold(np.array([]), 0.1)
