"""What makes the model's passes stochastic, and the order and seeds of a volume's slices."""

from __future__ import annotations

import numpy as np
from torch import nn

_DROPOUT_NAMES = {
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "AlphaDropout",
    "FeatureAlphaDropout",
}


def enable_mc_dropout(module: nn.Module) -> int:
    """Put ``module`` in eval mode, then its dropout modules in train mode; return their count.

    Works for TorchScript modules too (by their original class name). A model exported with
    dropout folded away (``torch.jit.freeze``, tracing in eval mode) has none left to enable.
    """
    module.eval()
    n = 0
    for m in module.modules():
        name = getattr(m, "original_name", None) or type(m).__name__
        if isinstance(m, nn.modules.dropout._DropoutNd) or name in _DROPOUT_NAMES:
            m.train()
            n += 1
    return n


def slice_order(n: int, start: int | None = None) -> list[int]:
    """``start`` first, then outwards (start+1, start-1, start+2, ...); 0..n-1 if start is None."""
    if start is None:
        return list(range(n))
    if not 0 <= start < n:
        raise ValueError(f"start slice {start} is outside 0..{n - 1}")
    order = [start]
    for d in range(1, n):
        for z in (start + d, start - d):
            if 0 <= z < n:
                order.append(z)
    return order


def slice_seed(seed: int, z: int) -> int:
    """The torch seed of slice ``z``'s passes: fixed by ``(seed, z)``, whatever the order."""
    return int(np.random.SeedSequence((int(seed), int(z))).generate_state(1)[0])
