"""Input normalisation and padding, shared by training, the Sampler and user models.

A normalisation is a small JSON-able dict, stored with a model's weights:

- ``{"kind": "percentile", "upper": 99.5, "clip": [0.0, 2.0]}``: divide each 2D slice by its
  ``upper`` percentile (if positive), then clip; the bundled model uses this.
- ``{"kind": "zscore"}``: subtract each slice's mean, divide by its standard deviation.
- ``{"kind": "minmax"}``: map each slice's [min, max] to [0, 1].
- ``{"kind": "none"}``: feed the values unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["NORMALIZATIONS", "check_normalization", "normalize", "pad_to_multiple"]

NORMALIZATIONS = ("percentile", "zscore", "minmax", "none")
DEFAULT_NORMALIZATION = {"kind": "percentile", "upper": 99.5, "clip": [0.0, 2.0]}


def check_normalization(spec: dict | str | None) -> dict:
    """Return a complete normalisation dict, or raise ValueError with the valid kinds."""
    if spec is None:
        return {"kind": "none"}
    if isinstance(spec, str):
        spec = DEFAULT_NORMALIZATION if spec == "percentile" else {"kind": spec}
    kind = spec.get("kind")
    if kind not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {kind!r}: use one of {', '.join(NORMALIZATIONS)}")
    if kind == "percentile":
        return {**DEFAULT_NORMALIZATION, **spec}
    return dict(spec)


def normalize(x: torch.Tensor, spec: dict) -> torch.Tensor:
    """Normalise a batch of slices ``(B, C, H, W)`` slice by slice (statistics over C, H, W)."""
    kind = spec["kind"]
    if kind == "none":
        return x
    flat = x.reshape(x.shape[0], -1).float()
    if kind == "percentile":
        q = torch.quantile(flat, float(spec["upper"]) / 100.0, dim=1)
        q = torch.where(q > 0, q, torch.ones_like(q))
        out = x / q.view(-1, 1, 1, 1).to(x.dtype)
        lo, hi = spec.get("clip") or (None, None)
        return out.clamp(lo, hi) if lo is not None else out
    if kind == "zscore":
        mu = flat.mean(dim=1).view(-1, 1, 1, 1)
        sd = flat.std(dim=1).clamp_min(1e-8).view(-1, 1, 1, 1)
        return ((x - mu) / sd).to(x.dtype)
    if kind == "minmax":
        lo = flat.min(dim=1).values.view(-1, 1, 1, 1)
        hi = flat.max(dim=1).values.view(-1, 1, 1, 1)
        return ((x - lo) / (hi - lo).clamp_min(1e-8)).to(x.dtype)
    raise ValueError(f"unknown normalisation {kind!r}")


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two axes at the bottom/right up to a multiple, with each slice's minimum.

    Returns the padded tensor and the original (H, W) to crop back to.
    """
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph == 0 and pw == 0:
        return x, (h, w)
    fill = x.reshape(x.shape[0], -1).min(dim=1).values.view(-1, 1, 1, 1)
    out = F.pad(x - fill, (0, pw, 0, ph)) + fill
    return out, (h, w)
