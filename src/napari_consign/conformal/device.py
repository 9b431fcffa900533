"""Choosing the torch device: ``resolve_device("auto" | "cuda" | "cuda:N" | "mps" | "cpu")``.

The one device rule of the package: model sampling, threshold-predictor training and the
CONSIGN membership search all resolve their ``device`` option here. Work that needs float64
(the CONSIGN search) passes ``float64=True``: MPS has no float64, so "auto" then skips it and
an explicit "mps" is refused.
"""

from __future__ import annotations

import os

import torch

from .errors import ConformalInputError

__all__ = ["ENV_VAR", "DeviceError", "available_devices", "resolve_device"]

ENV_VAR = "NAPARI_CONSIGN_DEVICE"


class DeviceError(ConformalInputError):
    """A requested device does not exist or does not work (bad input: a ValueError)."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _probe(device: torch.device) -> str | None:
    """Allocate a tiny tensor on the device; return an error text, or None if it works."""
    try:
        t = torch.ones(2, device=device)
        (t + t).sum().item()
    except Exception as exc:  # a broken driver can raise anything here
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def available_devices() -> list[str]:
    """Devices for a combobox: ``["cpu", "cuda:0", ..., "mps"]`` (only those that exist)."""
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        out.append("mps")
    return out


def resolve_device(
    requested: str | torch.device | None = "auto", *, float64: bool = False
) -> torch.device:
    """Return a working :class:`torch.device`.

    ``"auto"`` (or None) picks cuda > mps > cpu, confirming each candidate with a tiny probe
    allocation (a broken CUDA install can report ``is_available()`` and still fail). The
    environment variable ``NAPARI_CONSIGN_DEVICE`` replaces an ``"auto"`` request (an explicit
    argument wins). Explicit requests are validated and raise :class:`DeviceError` with the
    reason and the devices that do work. ``float64=True`` leaves out MPS (no float64 there).
    """
    if isinstance(requested, torch.device):
        requested = str(requested)
    req = (requested or "auto").strip().lower()
    if req == "auto":
        env = os.environ.get(ENV_VAR, "").strip().lower()
        if env and env != "auto":
            try:
                return resolve_device(env, float64=float64)
            except DeviceError as exc:
                raise DeviceError(f"{ENV_VAR}={env!r}: {exc}") from None
        if torch.cuda.is_available() and _probe(torch.device("cuda")) is None:
            return torch.device("cuda")
        if not float64 and _mps_available() and _probe(torch.device("mps")) is None:
            return torch.device("mps")
        return torch.device("cpu")

    if req == "cpu":
        return torch.device("cpu")
    choices = ", ".join(["auto", *available_devices()])
    if req.startswith("cuda"):
        try:
            dev = torch.device(req)
        except RuntimeError:
            raise DeviceError(f"invalid device {requested!r}: use one of {choices}") from None
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {requested!r} requested but CUDA is not available (torch "
                f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                f"use one of {choices}"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA "
                f"device(s) exist; use one of {choices}"
            )
    elif req == "mps":
        dev = torch.device("mps")
        if float64:
            raise DeviceError("device 'mps' has no float64, which this step needs; use cpu or cuda")
        if not _mps_available():
            raise DeviceError(
                f"device 'mps' requested but MPS is not available; use one of {choices}"
            )
    else:
        raise DeviceError(f"unknown device {requested!r}: use one of {choices}")
    err = _probe(dev)
    if err is not None:
        raise DeviceError(f"device {requested!r} is present but failed a test allocation: {err}")
    return dev
