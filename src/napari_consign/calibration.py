"""Calibration bundles: a fitted method saved with the model it was calibrated for.

A bundle is one ``.npz`` file read with ``allow_pickle=False`` (it can never run code): a JSON
header (format version, method, model identity, the method's state) and plain numeric arrays
(e.g. a threshold predictor's weights). Loading checks the model identity, so a bundle fitted
for one segmentation model is never applied to another's outputs.
"""

from __future__ import annotations

import importlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .conformal.errors import ConformalInputError
from .conformal.registry import METHODS

FORMAT = "napari-consign-bundle"
VERSION = 1
_HEADER = "__bundle__"
_ARRAY_PREFIX = "array/"


class BundleError(ConformalInputError):
    """A bundle that is missing, corrupt, of another format, or made for another model."""


def save_bundle(
    path: str | Path,
    method: Any,
    model_id: str,
    alphas: Any = None,
    overwrite: bool = False,
    extra: dict | None = None,
) -> Path:
    """Write ``method`` (calibrated) to ``path``; refuses to overwrite unless asked."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise BundleError(f"{path} exists; choose another name or pass overwrite=True")
    header = {
        "format": FORMAT,
        "version": VERSION,
        "method": method.name,
        "model_id": model_id,
        "state": method.state(alphas),
        "extra": extra or {},
    }
    arrays = method.state_arrays() if hasattr(method, "state_arrays") else {}
    payload = {_ARRAY_PREFIX + k: np.asarray(v) for k, v in arrays.items()}
    payload[_HEADER] = np.array(json.dumps(header))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(tmp, **payload)
    tmp.replace(path)
    return path


def read_bundle_header(path: str | Path) -> dict:
    """The JSON header of a bundle (method, model identity, state), validated."""
    return _read(path)[0]


def load_bundle(path: str | Path, model_id: str | None = None) -> Any:
    """Rebuild the calibrated method stored at ``path``.

    With ``model_id``, raise :class:`BundleError` unless the bundle was made for that model.
    """
    header, arrays = _read(path)
    if model_id is not None and header["model_id"] != model_id:
        raise BundleError(
            f"{path} was calibrated for model {header['model_id']!r}, not {model_id!r}: its "
            "thresholds are meaningless for this model's outputs; calibrate this model instead"
        )
    name = header["method"]
    module, _, cls_name = METHODS[name].partition(":")
    cls = getattr(importlib.import_module(module, "napari_consign.conformal"), cls_name)
    try:
        if arrays:
            return cls.from_state(header["state"], arrays)
        return cls.from_state(header["state"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: the stored {name} state is incomplete ({exc})") from None


def _read(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: no such calibration bundle")
    if not zipfile.is_zipfile(path):
        raise BundleError(f"{path} is not a napari-consign calibration bundle (not an NPZ)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if _HEADER not in npz.files:
                raise BundleError(f"{path} is an NPZ but not a napari-consign calibration bundle")
            header = json.loads(str(npz[_HEADER]))
            arrays = {
                k[len(_ARRAY_PREFIX) :]: npz[k] for k in npz.files if k.startswith(_ARRAY_PREFIX)
            }
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise BundleError(f"{path}: unreadable calibration bundle ({exc})") from None
    if header.get("format") != FORMAT:
        raise BundleError(f"{path} is not a napari-consign calibration bundle")
    if header.get("version") != VERSION:
        raise BundleError(
            f"{path} has bundle version {header.get('version')}, this napari-consign reads "
            f"version {VERSION}; recalibrate"
        )
    if header.get("method") not in METHODS:
        raise BundleError(f"{path} holds unknown method {header.get('method')!r}")
    return header, arrays
