"""Loading segmentation models safely: the bundled UNet, TorchScript files, state dicts.

Nothing here unpickles arbitrary Python objects: state dicts go through
``torch.load(weights_only=True)``, TorchScript through ``torch.jit.load``, ``.safetensors`` through
the optional ``safetensors`` package. Every loaded model is checked on a probe input; a wrong
output shape or a file that is not a model raises :class:`ModelLoadError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..shipped import sample_data_path
from .preprocess import check_normalization
from .unet import UNet, UNetConfig, infer_config_from_state_dict

__all__ = [
    "BUILTIN_MODEL",
    "LoadedModel",
    "ModelLoadError",
    "check_model_output",
    "file_sha256",
    "load_builtin_model",
    "load_model",
]

BUILTIN_MODEL = "unet_lesions"  # sample_data/unet_lesions.pt + unet_lesions.json
EXPECTED = (
    "expected a TorchScript archive (torch.jit.save), a state dict of the built-in UNet saved "
    "with torch.save(model.state_dict()), or a .safetensors file"
)


class ModelLoadError(ValueError):
    """A file is not a usable model; the message names the file and what was expected."""


@dataclass
class LoadedModel:
    """A ready-to-run segmentation model and what the Sampler needs to know about it."""

    module: nn.Module
    source: str  # "builtin", "torchscript" or "state_dict"
    identity: str  # sha256 of the weights file (calibration bundles record it)
    path: Path | None = None
    in_channels: int = 1
    out_channels: int = 2
    size_divisor: int = 16  # inputs are padded to a multiple of this
    output: str = "logits"  # "logits" or "probabilities"
    normalization: dict = field(default_factory=lambda: {"kind": "none"})
    info: dict = field(default_factory=dict)  # the sidecar JSON, if any

    @property
    def name(self) -> str:
        return self.path.name if self.path is not None else self.source

    def to(self, device: torch.device | str) -> LoadedModel:
        self.module.to(device)
        return self


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


# --------------------------------------------------------------------------- probing
def check_model_output(
    module: nn.Module,
    *,
    in_channels: int = 1,
    size: int = 64,
    device: torch.device | str = "cpu",
    output: str = "auto",
    name: str = "model",
) -> tuple[int, str]:
    """Run ``module`` (eval mode) on a probe input ``(1, in_channels, size, size)``.

    Returns ``(C, output)`` with output "logits" or "probabilities" (detected when ``output``
    is "auto": values in [0, 1] that sum to 1 over channels, or C == 1 in [0, 1]). Raises
    :class:`ModelLoadError` on a failure or an output that is not ``(1, C>=1, size, size)``.
    """
    was_training = module.training
    module.eval()
    x = torch.rand(1, in_channels, size, size, generator=torch.Generator().manual_seed(0))
    x = x.to(device)
    try:
        with torch.inference_mode():
            out = module(x)
    except Exception as exc:
        raise ModelLoadError(
            f"{name}: model failed on a probe input of shape {tuple(x.shape)} "
            f"({_short(exc)}); expected a 2D segmentation network taking (B, {in_channels}, H, W)"
        ) from exc
    finally:
        module.train(was_training)
    if isinstance(out, list | tuple) and out and isinstance(out[0], torch.Tensor):
        out = out[0]
    if isinstance(out, Mapping) and "out" in out:
        out = out["out"]
    expected = f"expected (1, C>=1, {size}, {size}) probabilities or logits"
    if not isinstance(out, torch.Tensor):
        raise ModelLoadError(
            f"{name}: model returned {type(out).__name__} for input {tuple(x.shape)}: {expected}"
        )
    if (
        out.ndim != 4
        or out.shape[0] != 1
        or out.shape[1] < 1
        or tuple(out.shape[2:])
        != (
            size,
            size,
        )
    ):
        raise ModelLoadError(
            f"{name}: model returned shape {tuple(out.shape)} for input {tuple(x.shape)}: "
            f"{expected}"
        )
    if not torch.isfinite(out).all():
        raise ModelLoadError(f"{name}: model returned NaN or infinite values on a probe input")
    c = int(out.shape[1])
    if output == "auto":
        o = out.float()
        in01 = bool(((o >= 0) & (o <= 1)).all())
        sums1 = c == 1 or bool(torch.allclose(o.sum(1), torch.ones_like(o[:, 0]), atol=1e-3))
        output = "probabilities" if in01 and sums1 else "logits"
    elif output not in ("logits", "probabilities"):
        raise ValueError(f"output must be 'auto', 'logits' or 'probabilities', not {output!r}")
    return c, output


# --------------------------------------------------------------------------- reading
def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise ModelLoadError(
                f"{path}: reading .safetensors needs the 'safetensors' package (pip install "
                "safetensors), or save the weights with torch.save(model.state_dict(), ...)"
            ) from None
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise ModelLoadError(
                f"{path} is not a valid .safetensors file ({_short(exc)})"
            ) from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        msg = str(exc)
        glob = re.search(r"Unsupported global: GLOBAL ([\w.]+)", msg)
        if glob:
            raise ModelLoadError(
                f"{path} holds pickled Python objects ({glob.group(1)}; e.g. a whole model saved "
                "with torch.save(model)); for safety only TorchScript files and state dicts are "
                "loaded: save torch.jit.script(model).save(...) or model.state_dict()"
            ) from exc
        why = re.search(r"WeightsUnpickler error:\s*(.+)", msg)
        reason = why.group(1).strip() if why else _short(exc)
        raise ModelLoadError(f"{path} is not a model file: {EXPECTED} ({reason[:200]})") from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ModelLoadError(
            f"{path} holds a {type(obj).__name__}, not a state dict of tensors: {EXPECTED}"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelLoadError(f"{path}: state dict entry {bad[0]!r} is not a tensor: {EXPECTED}")
    return dict(obj)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


def _sidecar(path: Path) -> dict:
    side = path.with_suffix(".json")
    if not side.is_file():
        return {}
    try:
        return json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"{side}: cannot read the model's JSON description ({_short(exc)})"
        ) from None


def load_model(
    path: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    output: str = "auto",
    in_channels: int | None = None,
    normalization: dict | str | None = None,
    config: UNetConfig | dict | None = None,
) -> LoadedModel:
    """Load a model file safely and check it on a probe input.

    ``path`` None loads the bundled UNet. A TorchScript archive is loaded with
    ``torch.jit.load``; anything else is read as a state dict for the built-in UNet (its
    architecture from ``config``, the sidecar ``<stem>.json``, or the tensor shapes).
    ``normalization`` (see :mod:`.preprocess`) defaults to the sidecar's, else none.
    """
    if path is None:
        return load_builtin_model(device=device)
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model file")
    if path.is_dir():
        raise ModelLoadError(f"{path} is a folder: {EXPECTED}")
    if not path.is_file():
        raise ModelLoadError(f"{path} is not a regular file (a FIFO or device?): {EXPECTED}")
    info = _sidecar(path)
    identity = file_sha256(path)
    if _is_torchscript(path):
        try:
            with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ModelLoadError(f"{path}: broken TorchScript archive ({_short(exc)})") from exc
        source = "torchscript"
        cin = in_channels or int(info.get("config", {}).get("in_channels", 1))
        divisor = int(getattr(module, "size_divisor", info.get("size_divisor", 16)))
    else:
        state = _read_state_dict(path)
        cfg_src = config if config is not None else info.get("config")
        try:
            if cfg_src is None:
                cfg = infer_config_from_state_dict(state)
            elif isinstance(cfg_src, UNetConfig):
                cfg = cfg_src
            else:
                cfg = UNetConfig.from_dict(cfg_src)
            module = UNet.from_config(cfg)
            module.load_state_dict(state, strict=True)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise ModelLoadError(
                f"{path}: the state dict does not match the built-in UNet ({_short(exc)}); "
                "pass a TorchScript file for other architectures"
            ) from exc
        source = "state_dict"
        cin = cfg.in_channels
        divisor = cfg.size_divisor
    if output == "auto":
        output = info.get("output", "logits" if source == "state_dict" else "auto")
    module.to(device)
    module.eval()
    c, out_kind = check_model_output(
        module,
        in_channels=cin,
        size=max(64, divisor),
        device=device,
        output=output,
        name=str(path),
    )
    norm = normalization if normalization is not None else info.get("normalization")
    return LoadedModel(
        module=module,
        source=source,
        identity=identity,
        path=path,
        in_channels=cin,
        out_channels=c,
        size_divisor=divisor,
        output=out_kind,
        normalization=check_normalization(norm),
        info=info,
    )


#: Sidecar fields that change how a model's raw output becomes a probability map.
SETTINGS_FIELDS = ("output", "normalization", "config", "size_divisor", "foreground_channel")


def model_settings(path: str | Path | None) -> dict:
    """The settings of a model file besides its weights, from its ``.json`` sidecar.

    ``path`` None is the bundled model. Missing fields are recorded as None, so a weights file
    without its sidecar has other settings than the same weights with one.
    """
    p = builtin_model_files()[0] if path is None else Path(path)
    info = _sidecar(p) if p.is_file() else {}
    if not isinstance(info, dict):
        raise ModelLoadError(f"{p.with_suffix('.json')}: the model description is not an object")
    return {key: info.get(key) for key in SETTINGS_FIELDS}


def model_settings_id(paths: tuple | list = ()) -> str:
    """sha256 of the settings of the model(s) ``paths`` (empty: the bundled model).

    Calibration bundles record it next to the weights' identity: the same weights with another
    normalisation or output interpretation give other scores, so another calibration.
    """
    settings = [model_settings(p) for p in paths] or [model_settings(None)]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def builtin_identity() -> str | None:
    """The sha256 of the bundled weights recorded in their JSON, or None if unavailable."""
    try:
        return _sidecar(builtin_model_files()[0]).get("sha256")
    except ModelLoadError:
        return None


def builtin_model_files() -> tuple[Path, Path]:
    """Paths of the bundled weights and their JSON description."""
    try:
        return (
            sample_data_path(f"{BUILTIN_MODEL}.pt"),
            sample_data_path(f"{BUILTIN_MODEL}.json"),
        )
    except FileNotFoundError as exc:
        raise ModelLoadError(
            f"bundled model missing ({exc}); rebuild it with scripts/train_model.py"
        ) from None


def load_builtin_model(device: torch.device | str = "cpu") -> LoadedModel:
    """The bundled MC-dropout UNet (lesion segmentation on the sample data).

    Its identity is the sha256 recorded in the JSON; a mismatch (corrupted or replaced weights)
    raises :class:`ModelLoadError`.
    """
    weights, meta = builtin_model_files()
    model = load_model(weights, device=device)
    expected = model.info.get("sha256")
    if expected and expected != model.identity:
        raise ModelLoadError(
            f"{weights}: sha256 {model.identity[:12]}... does not match {meta.name} "
            f"({expected[:12]}...); the weights were changed: rebuild with scripts/train_model.py"
        )
    model.source = "builtin"
    return model
