"""Calibration bundles: a fitted method saved with the model it was calibrated for.

A bundle is one ``.npz`` file read with ``allow_pickle=False`` (it can never run code): a JSON
header (format version, method, model identity, the method's state) and plain numeric arrays
(e.g. a threshold predictor's weights). Loading checks the model identity, so a bundle fitted
for one segmentation model is never applied to another's outputs.

Every bundle written here carries a content checksum (sha256 of its header and arrays) and
``extra`` records how the calibration scores were made (sampling mode, N_s, the model's
settings id, see :func:`napari_consign.models.loading.model_settings_id`). Loading validates
every field's type, range and consistency (:func:`validate_bundle`): thresholds NaN or out of
range, tables not monotone in alpha (inner and outer swapped), non-finite predictor weights,
``n_used`` inconsistent with the stored levels, empty tables and a header that is not a JSON
object are refused with one line naming the field. :func:`serve_alpha` maps a requested alpha
to the level a bundle serves, never silently a weaker one.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .conformal.crc_rule import min_feasible_alpha
from .conformal.errors import ConformalInputError
from .conformal.registry import METHODS, method_class
from .conformal.state_checks import StateError, count
from .io.safe_write import check_target, write_npz
from .npz_contract import check_npz_members

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
        "state": method.to_state(alphas),
        "extra": extra or {},
    }
    arrays = {k: np.asarray(v) for k, v in method.state_arrays().items()}
    header["checksum"] = content_checksum(header, arrays)
    validate_bundle(header, arrays, path)  # never write what load would refuse
    payload = {_ARRAY_PREFIX + k: v for k, v in arrays.items()}
    payload[_HEADER] = np.array(json.dumps(header))
    path.parent.mkdir(parents=True, exist_ok=True)
    check_target(path, "bundle", overwrite=overwrite, flag="overwrite=True (--overwrite)")
    write_npz(path, payload, replace=overwrite)
    return path


def content_checksum(header: dict, arrays: dict[str, np.ndarray]) -> str:
    """sha256 of a bundle's header (without its checksum) and arrays (names, types, bytes)."""
    h = hashlib.sha256()
    body = {k: v for k, v in header.items() if k != "checksum"}
    h.update(json.dumps(body, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


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
    try:
        return method_class(name).from_state(header["state"], arrays)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: the stored {name} state is incomplete ({exc})") from None


def _read(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise BundleError(f"{path} is not a regular file (a folder or FIFO?)")
        raise BundleError(f"{path}: no such calibration bundle")
    if not zipfile.is_zipfile(path):
        raise BundleError(f"{path} is not a napari-consign calibration bundle (not an NPZ)")
    check_npz_members(path, BundleError)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if _HEADER not in npz.files:
                raise BundleError(f"{path} is an NPZ but not a napari-consign calibration bundle")
            header = json.loads(str(npz[_HEADER]))
            if not isinstance(header, dict):
                raise BundleError(
                    f"{path}: the bundle header is a {type(header).__name__}, not a JSON object"
                )
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
    validate_bundle(header, arrays, path)
    return header, arrays


# --------------------------------------------------------------------------- validation


def validate_bundle(header: dict, arrays: dict[str, np.ndarray], path: Any = "bundle") -> None:
    """Raise :class:`BundleError` naming the first field out of range or inconsistent.

    The fields every bundle has are checked here; the method's own tables by its class
    (:meth:`~napari_consign.conformal.method.ConformalMethod.check_state`).
    """
    stored = header.get("checksum")
    if stored is not None and stored != content_checksum(header, arrays):
        raise BundleError(
            f"{path}: the contents do not match the bundle's checksum (edited or damaged); "
            "recalibrate or restore the file"
        )
    if not isinstance(header.get("model_id"), str) or not header["model_id"]:
        raise BundleError(f"{path}: the bundle records no model identity")
    if not isinstance(header.get("extra", {}), dict):
        raise BundleError(f"{path}: the bundle's 'extra' field is not a JSON object")
    state = header.get("state")
    if not isinstance(state, dict):
        raise BundleError(f"{path}: the bundle's state is not a JSON object")
    try:
        count(state, "n_used", 1)
        count(state, "n_empty", 0)
        method_class(header["method"]).check_state(state, arrays)
    except StateError as exc:
        raise BundleError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- serving


def bundle_levels(header: dict) -> list[float]:
    """The alpha levels a (validated) bundle serves bands at, ascending."""
    return method_class(header["method"]).state_levels(header["state"])


def serve_alpha(
    levels: Sequence[float],
    alpha: float,
    allow_weaker: bool = False,
    what: Any = "",
    header: dict | None = None,
) -> tuple[float, str]:
    """The level that serves a request for ``alpha``, and a note ("" when it is ``alpha``).

    ``levels``: the served levels (``header``: the bundle's, for the message). The served
    level is the largest one not above ``alpha`` (its guarantee is at least as strong; the
    note says so). When every level lies above ``alpha`` the guarantee would be weaker than
    asked: :class:`BundleError`, unless ``allow_weaker``, which serves the smallest level and
    says so in the note.
    """
    n_used = (header or {}).get("state", {}).get("n_used")
    grid = np.sort(np.asarray(levels, dtype=np.float64))
    if grid.size == 0:
        raise BundleError(f"{what}: no calibrated alpha level to serve")
    exact = np.flatnonzero(np.abs(grid - alpha) <= 1e-9)
    if exact.size:
        return float(grid[exact[0]]), ""
    below = grid[grid < alpha]
    if below.size:
        served = float(below[-1])
        return served, (
            f"alpha {alpha:g} is not a calibrated level: served at {served:g}, a stronger "
            "guarantee (larger bands) than asked"
        )
    served = float(grid[0])
    if allow_weaker:
        return served, (
            f"alpha {alpha:g} lies below every calibrated level: served at {served:g}, a WEAKER "
            "guarantee than asked (--allow-weaker)"
        )
    floor = ""
    if n_used:
        floor = f"; {n_used} calibration units support alpha >= {min_feasible_alpha(n_used):.4g}"
    raise BundleError(
        f"{what}: alpha {alpha:g} lies below the smallest level it serves ({served:g}{floor}); "
        f"serving {served:g} would give a weaker guarantee than asked. Ask for alpha >= "
        f"{served:g}, calibrate on more units, or pass --allow-weaker"
    )


def check_sampling(
    header: dict, path: Any, *, mode: str, n_samples: int, settings: str
) -> list[str]:
    """Refuse a bundle whose scores were made differently from this run's; returns notes.

    Compared with what the bundle's ``extra`` records: the sampling mode, N_s (not for
    ensembles: one sample per member) and the model settings id (normalisation, output
    interpretation, architecture; :func:`~napari_consign.models.loading.model_settings_id`).
    A bundle that records no settings id is taken to use the bundled model's when made for
    its weights; otherwise a note says the settings were not checked.
    """
    from .models.loading import builtin_identity, model_settings_id

    extra = header.get("extra", {})
    notes: list[str] = []
    made = extra.get("mode")
    if made is not None and made != mode:
        raise BundleError(
            f"{path} was calibrated with sampling mode {made!r}, not {mode!r}: its thresholds "
            f"do not fit these scores; use --mode {made} or calibrate this mode"
        )
    made_n = extra.get("n_samples")
    if mode != "ensemble" and made_n is not None and int(made_n) != int(n_samples):
        raise BundleError(
            f"{path} was calibrated at N_s = {made_n} samples per slice, not {n_samples}: the "
            f"mean of another number of samples has another distribution; use --n-samples "
            f"{made_n} or calibrate at {n_samples}"
        )
    recorded = extra.get("model_settings")
    if recorded is None and header.get("model_id") == builtin_identity():
        recorded = model_settings_id(())
    if recorded is None:
        notes.append(f"{path} records no model settings (normalisation, output); not checked")
    elif recorded != settings:
        raise BundleError(
            f"{path} was calibrated with other model settings (normalisation, output "
            "interpretation or architecture in the model's .json sidecar) than this model's; "
            "keep the sidecar that was used, or calibrate again"
        )
    return notes
