"""Everything torch: networks, safe model loading, device choice and the MC Sampler.

Names are imported lazily, so ``import napari_consign.models`` does not import torch; the
first use of e.g. ``napari_consign.models.Sampler`` does.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "UNet": "unet",
    "UNetConfig": "unet",
    "DeviceError": "..conformal.device",
    "available_devices": "..conformal.device",
    "resolve_device": "..conformal.device",
    "LoadedModel": "loading",
    "ModelLoadError": "loading",
    "load_builtin_model": "loading",
    "load_model": "loading",
    "Sampler": "sampler",
    "SliceProgress": "sampler",
    "enable_mc_dropout": "stochastic",
    "sample_volume": "sampler",
    "Decomposition": "reductions",
    "KeepSamples": "reductions",
    "Moments": "reductions",
    "Reducer": "reductions",
    "TopK": "reductions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        target = _EXPORTS[name]
        module = importlib.import_module(target if target[0] == "." else f".{target}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return __all__
