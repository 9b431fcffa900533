"""Which model to sample with, and the one process-wide cache of loaded samplers.

:func:`cached_sampler` is the only place a :class:`~napari_consign.models.Sampler` is kept
between uses: the widget's runs, ``predict`` and the CLI's per-scan jobs
(:mod:`napari_consign.scan_sampling`) all go through it. Torch is imported when a sampler is
built, not by importing this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The loaded sampler of this process (one model at a time), keyed by spec and file stamps.
_SAMPLERS: dict[tuple, Any] = {}


@dataclass(frozen=True)
class ModelSpec:
    """Which model to sample with: ``paths`` empty means the bundled UNet.

    Two or more paths form an ensemble (one sample per member); ``mode`` is "mc_dropout" or
    "tta" (flips, for models without dropout) for a single model.
    """

    paths: tuple[Path, ...] = ()
    mode: str = "mc_dropout"
    n_samples: int = 10
    device: str = "auto"
    seed: int = 0

    @property
    def describe(self) -> str:
        if not self.paths:
            return "bundled lesion UNet"
        if len(self.paths) == 1:
            return self.paths[0].name
        return f"ensemble of {len(self.paths)} models"

    @property
    def sampling_mode(self) -> str:
        """The sampler's mode: "ensemble" for two or more models, else ``mode``."""
        return "ensemble" if len(self.paths) > 1 else self.mode


def _threads(device: Any) -> int | None:
    """Torch threads for sampling: all cores but one (kept for the GUI) on CPU."""
    return max(1, (os.cpu_count() or 2) - 1) if device.type == "cpu" else None


def build_sampler(spec: ModelSpec) -> Any:
    """Load the model(s) of ``spec`` on its device and return a ready ``Sampler``."""
    from ..models import Sampler, load_builtin_model, load_model, resolve_device

    device = resolve_device(spec.device)
    if not spec.paths:
        models = [load_builtin_model(device=device)]
    else:
        models = [load_model(p, device=device) for p in spec.paths]
    mode = "ensemble" if len(models) > 1 else spec.mode
    n = None if mode == "ensemble" else spec.n_samples
    if mode == "tta":
        n = min(int(spec.n_samples), 4)
    return Sampler(
        models if mode == "ensemble" else models[0],
        mode=mode,
        n_samples=n,
        device=device,
        seed=spec.seed,
        num_threads=_threads(device),
    )


def cached_sampler(spec: ModelSpec, cache: dict | None = None) -> Any:
    """The sampler of ``spec``, loaded once per process (or per ``cache``, a caller's dict).

    A model file changed on disk is loaded again; one model is kept at a time. The sampler's
    seed and thread count are reset to ``spec``'s on every call, so a caller that changed
    them (per-scan seeds) leaves nothing behind.
    """
    cache = _SAMPLERS if cache is None else cache
    stamps = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in spec.paths)
    key = (spec, stamps)
    if key not in cache:
        cache.clear()
        cache[key] = build_sampler(spec)
    sampler = cache[key]
    sampler.seed = spec.seed
    sampler.num_threads = _threads(sampler.device)
    return sampler
