"""Where calibrated methods come from: shipped bundles, bundle files, or given objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files as package_files
from pathlib import Path
from typing import Any

from ..calibration import (
    BundleError,
    check_sampling,
    load_bundle,
    read_bundle_header,
    save_bundle,
)
from ..conformal.errors import ConformalInputError
from ..conformal.registry import NAMES
from .session import ModelSpec


def bundled_bundle_dir() -> Path:
    """Folder of the shipped calibration bundles (``sample_data/bundles``; may not exist)."""
    return Path(str(package_files("napari_consign") / "sample_data" / "bundles"))


def bundled_bundle_path(name: str) -> Path:
    """Path of the shipped bundle of method ``name`` (may not exist yet)."""
    return bundled_bundle_dir() / f"{name}.npz"


def bundled_methods() -> list[str]:
    """Methods that have a shipped bundle."""
    return [m for m in NAMES if bundled_bundle_path(m).is_file()]


def bundle_method(path: str | Path) -> str:
    """Name of the method stored in a bundle file (raises ``BundleError`` for a bad file)."""
    return str(read_bundle_header(path)["method"])


@dataclass(frozen=True)
class CalibrationSpec:
    """Where calibrated methods come from.

    ``kind``: "bundled" (the shipped bundles), "files" (bundle files, one method each),
    "calibrate" (calibrate now on ``source``: an NPZ with ``images`` and ``masks`` or a folder
    of image + mask NIfTI files; at most ``max_cases`` calibration units, optionally saving
    bundles into ``save_dir``) or "given" (already calibrated method objects, ``methods``).
    """

    kind: str = "bundled"
    files: tuple[Path, ...] = ()
    source: Path | None = None
    max_cases: int = 200
    save_dir: Path | None = None
    epochs: int | None = None
    methods: dict[str, Any] | None = None

    def key(self) -> tuple:
        """Identifies a calibration for caching (not for "given" methods)."""
        return (self.kind, self.files, self.source, self.max_cases, self.epochs)


def load_calibrated(
    spec: CalibrationSpec, wanted: Sequence[str], model_id: str, model: ModelSpec | None = None
) -> dict:
    """Calibrated method objects for ``wanted`` from bundles, checked against ``model_id`` and,
    with ``model``, against its sampling: mode, N_s and model settings (sidecar), as
    ``predict`` checks them (:func:`napari_consign.calibration.check_sampling`).

    Raises ``BundleError`` (a ``ConformalInputError``) for a missing bundle, a broken file, a
    bundle made for another model or for other sampling.
    """
    from ..models.loading import model_settings_id

    def checked(path: Path) -> Any:
        if model is not None:
            check_sampling(
                read_bundle_header(path),
                path.name,
                mode=model.sampling_mode,
                n_samples=model.n_samples,
                settings=model_settings_id(model.paths),
            )
        return load_bundle(path, model_id=model_id)

    out: dict[str, Any] = {}
    if spec.kind == "bundled":
        for m in wanted:
            path = bundled_bundle_path(m)
            if not path.is_file():
                raise BundleError(
                    f"no shipped calibration for {m.upper()} ({path} is missing); pick a "
                    "bundle file or calibrate now"
                )
            out[m] = checked(path)
        return out
    if spec.kind == "files":
        by_method: dict[str, Path] = {}
        for p in spec.files:
            by_method[bundle_method(p)] = Path(p)
        missing = [m for m in wanted if m not in by_method]
        if missing:
            have = ", ".join(sorted(by_method)) or "none"
            raise BundleError(
                f"the chosen bundle files hold {have}, not {', '.join(missing)}; add a bundle "
                "for each chosen method or untick it"
            )
        for m in wanted:
            out[m] = checked(by_method[m])
        return out
    if spec.kind == "given":
        methods = spec.methods or {}
        missing = [m for m in wanted if m not in methods]
        if missing:
            raise ConformalInputError(f"no calibrated method given for {', '.join(missing)}")
        return {m: methods[m] for m in wanted}
    raise ConformalInputError(f"unknown calibration kind {spec.kind!r}")


def save_bundles(methods: dict, folder: str | Path, model_id: str) -> tuple[list[Path], list[str]]:
    """Save each calibrated method as ``<folder>/<method>.npz``; returns (written, problems)."""
    written, problems = [], []
    for name, m in methods.items():
        try:
            written.append(save_bundle(Path(folder) / f"{name}.npz", m, model_id, overwrite=True))
        except Exception as exc:  # a method without bundle support must not lose the others
            problems.append(f"{name.upper()}: bundle not saved ({exc})")
    return written, problems
