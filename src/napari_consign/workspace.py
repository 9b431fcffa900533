"""The dock widget's state, Qt-free and evented: what the user chose and what each scan gave.

:class:`Workspace` is the model the widget's panels show and edit (as napari-animation keeps its
``Animation`` model outside its Qt code): the chosen scan and ground truth (layer keys, opaque
here), the ticked methods and why the others cannot run, alpha, model and calibration choices,
the run's status and progress, and one :class:`~napari_consign.analysis.ImageAnalysis` per
analysed scan. Every field emits on change through ``workspace.events.<field>`` (a psygnal
evented dataclass); per-scan results emit :attr:`Workspace.results_changed`. Nothing here
imports Qt or napari, so the choices' rules are tested without a viewer.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from psygnal import Signal, evented

from . import analysis as an
from .guarantee_text import guarantee

ALPHA_STEPS = 50  # slider 1..50 -> alpha 0.01..0.50
DEFAULT_ALPHA = 0.10
#: the slider's alphas: the 3D code volumes precompute one colormap column per step
SLIDER_ALPHAS = np.arange(1, ALPHA_STEPS + 1) / 100.0
#: the methods ticked when nothing is (and they can run)
DEFAULT_METHODS = ("crc", "coat")
CALIBRATION_KINDS = ("bundled", "files", "calibrate", "given")


def snap_alpha(alpha: float) -> float:
    """``alpha`` on the slider's grid: 0.01 steps within 0.01..0.50."""
    return int(np.clip(round(float(alpha) * 100), 1, ALPHA_STEPS)) / 100


@dataclass(frozen=True)
class CalibrationChoice:
    """Where calibrations come from: see :class:`~napari_consign.analysis.CalibrationSpec`."""

    kind: str = "bundled"
    files: tuple[Path, ...] = ()
    source: Path | None = None
    save_dir: Path | None = None
    given: dict | None = field(default=None, compare=False)

    @property
    def describe(self) -> str:
        """A short line for beside the calibration picker."""
        return {
            "bundled": "",
            "files": ", ".join(p.name for p in self.files),
            "calibrate": self.source.name if self.source else "",
            "given": "calibrated methods given by a script",
        }.get(self.kind, "")


def check_image(layer: Any) -> str:
    """Why ``layer`` (an image layer, or None) cannot be analysed ("" when it can)."""
    if layer is None:
        return (
            "Open a scan first (File > Open with the napari-consign reader, or File > "
            "Open Sample > napari-consign) and choose it in the widget."
        )
    name = f"'{layer.name}'"
    if getattr(layer, "rgb", False):
        return (
            f"{name} is an RGB colour image; the model segments single-channel scans. "
            "Open a greyscale scan."
        )
    if getattr(layer, "multiscale", False):
        return f"{name} is a multiscale (pyramid) image; open the full-resolution scan."
    shape = tuple(layer.data.shape)
    if layer.ndim > 3:
        return (
            f"{name} is {layer.ndim}D {shape}: the bands are made for one 2D or 3D scan. "
            "Split it into single volumes first (e.g. one time point or channel)."
        )
    if layer.ndim < 2 or min(shape) < 1:
        return f"{name} has shape {shape}: expected a 2D or 3D scan."
    dtype = np.dtype(layer.data.dtype)
    real = np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.bool_)
    if not real or np.issubdtype(dtype, np.complexfloating):
        return f"{name} holds {dtype} values; expected real-valued intensities."
    return ""


@dataclass(eq=False)
class RunState:
    """The run in progress: its scan (a layer, opaque here), the analysis it fills, the one it
    replaces, the methods whose layer it added (removed again if it is cancelled)."""

    image: Any
    analysis: an.ImageAnalysis
    previous: an.ImageAnalysis | None = None
    created: set = field(default_factory=set)
    started: float = 0.0
    source_removed: bool = False


@evented
@dataclass(eq=False)
class Workspace:
    """The widget's choices, run state and per-scan results (see the module docstring).

    ``image`` and ``truth`` are layer keys (``layer.unique_id`` in the widget); ``progress``
    is ``(done, total)`` with ``total == 0`` for work of unknown length.
    """

    image: Hashable | None = None
    truth: Hashable | None = None
    methods: tuple[str, ...] = ()
    availability: dict = field(default_factory=dict)  # method -> "" or why it cannot run
    alpha: float = DEFAULT_ALPHA
    model_files: tuple[Path, ...] = ()
    use_model_files: bool = False
    mode: str = "mc_dropout"
    n_samples: int = 10
    device: str = "auto"
    calibration: CalibrationChoice = field(default_factory=CalibrationChoice)
    max_cases: int = 200
    ring_fill: bool = False
    status: str = ""
    busy: bool = False
    progress: tuple[int, int] = (0, 1)
    last_error: str = ""
    run: RunState | None = None

    #: the key of a scan whose analysis was stored or dropped
    results_changed = Signal(object)

    def __post_init__(self) -> None:
        self._analyses: dict[Hashable, an.ImageAnalysis] = {}
        self.refresh_methods()

    # ------------------------------------------------------------------ methods
    def set_methods(self, methods: Iterable[str]) -> None:
        """Tick exactly these methods (in the registry's order)."""
        wanted = set(methods)
        self.methods = tuple(m for m in an.METHOD_NAMES if m in wanted)

    def selected_methods(self) -> list[str]:
        """The ticked methods that can run with the chosen calibration."""
        return [m for m in self.methods if not self.availability.get(m)]

    def available_methods(self) -> dict[str, str]:
        """Method -> "" when it can run with the chosen calibration, else why not."""
        cal = self.calibration
        held: set[str] = set()
        if cal.kind == "files":
            for p in cal.files:
                try:
                    held.add(an.bundle_method(p))
                except Exception:  # not a bundle: it holds no method
                    continue
        out: dict[str, str] = {}
        for m in an.METHOD_NAMES:
            if cal.kind == "bundled":
                path = an.bundled_bundle_path(m)
                out[m] = "" if path.is_file() else f"no shipped bundle ({path.name})"
            elif cal.kind == "files":
                out[m] = "" if m in held else "none of the chosen bundle files holds it"
            elif cal.kind == "given":
                out[m] = "" if cal.given and m in cal.given else "not given"
            else:
                out[m] = ""
        return out

    def refresh_methods(self) -> None:
        """Untick what the calibration cannot run; tick the defaults when nothing is left."""
        avail = self.available_methods()
        checked = list(self.methods)
        self.availability = avail
        kept = [m for m in checked if not avail.get(m)]
        if not kept:
            defaults = [m for m in DEFAULT_METHODS if not avail.get(m)]
            if not defaults:
                defaults = [m for m in an.METHOD_NAMES if not avail.get(m)][:1]
            kept = [m for m in (checked or defaults) if not avail.get(m)]
        self.set_methods(kept)

    # ------------------------------------------------------------------ model, calibration
    def set_model_files(self, paths: Iterable[str | Path] = ()) -> None:
        """Use these model files (none: the bundled UNet; several: an ensemble)."""
        self.model_files = tuple(Path(p) for p in paths)
        self.use_model_files = bool(self.model_files)

    def model_spec(self) -> an.ModelSpec:
        return an.ModelSpec(
            paths=self.model_files if self.use_model_files else (),
            mode=self.mode or "mc_dropout",
            n_samples=int(self.n_samples),
            device=self.device,
        )

    def set_calibration(
        self,
        kind: str,
        *,
        files: Iterable[str | Path] = (),
        source: str | Path | None = None,
        save_dir: str | Path | None = None,
        methods: dict | None = None,
    ) -> None:
        """Choose where calibrations come from: "bundled", "files" (bundle files),
        "calibrate" (now, on ``source``: NPZ or folder) or "given" (calibrated ``methods``).
        The sample count follows the chosen bundles when they record one."""
        if kind not in CALIBRATION_KINDS:
            raise ValueError(f"calibration kind must be one of {CALIBRATION_KINDS}, not {kind!r}")
        self.calibration = CalibrationChoice(
            kind=kind,
            files=tuple(Path(p) for p in files),
            source=Path(source) if source is not None else None,
            save_dir=Path(save_dir) if save_dir is not None else None,
            given=dict(methods) if methods else None,
        )
        self.refresh_methods()
        n = self.bundle_settings().get("n_samples")
        if n:
            self.n_samples = int(n)

    def calibration_spec(self) -> an.CalibrationSpec:
        cal = self.calibration
        return an.CalibrationSpec(
            kind=cal.kind,
            files=cal.files,
            source=cal.source,
            max_cases=int(self.max_cases),
            save_dir=cal.save_dir,
            methods=cal.given,
        )

    def bundle_settings(self) -> dict:
        """Sampling settings the chosen bundles were calibrated with (``extra`` of their
        headers: ``n_samples``, ``mode``), when they record them and agree."""
        from .calibration import read_bundle_header

        cal = self.calibration
        if cal.kind == "bundled":
            paths = [an.bundled_bundle_path(m) for m in an.METHOD_NAMES]
        elif cal.kind == "files":
            paths = list(cal.files)
        else:
            return {}
        seen: dict[str, set] = {"n_samples": set(), "mode": set()}
        for p in paths:
            if not p.is_file():
                continue
            try:
                extra = read_bundle_header(p).get("extra") or {}
            except Exception:  # unreadable header: it records nothing
                continue
            for key in seen:
                if extra.get(key) is not None:
                    seen[key].add(extra[key])
        return {k: next(iter(v)) for k, v in seen.items() if len(v) == 1}

    def run_problem(self) -> str:
        """Why the chosen methods, calibration and model cannot run now ("" when they can)."""
        if not self.selected_methods():
            return "Tick at least one method (methods without a calibration are greyed)."
        cal = self.calibration
        if cal.kind == "calibrate" and cal.source is None:
            return "Choose an NPZ file or a folder of image + mask NIfTI files to calibrate."
        if cal.kind == "files" and not cal.files:
            return "Choose calibration bundle files first."
        settings = self.bundle_settings() if cal.kind in ("bundled", "files") else {}
        model = self.model_spec()
        calibrated_n = settings.get("n_samples")
        if len(model.paths) <= 1 and calibrated_n and int(calibrated_n) != model.n_samples:
            return (
                f"The calibration was made with {calibrated_n} Monte-Carlo samples "
                f"per slice; this run asks for {model.n_samples}, whose scores have another "
                f"distribution, so the guarantee would not hold. Set samples to "
                f"{calibrated_n} (Model, sampling and calibration) or calibrate now."
            )
        return ""

    # ------------------------------------------------------------------ alpha
    def set_alpha(self, alpha: float) -> float:
        """Set alpha on the slider's grid and return it (emits even when unchanged, so the
        views are brought up to date)."""
        value = snap_alpha(alpha)
        if value == self.alpha:
            self.events.alpha.emit(value, value)
        self.alpha = value
        return value

    def shown_methods(self, key: Hashable | None) -> list[str]:
        """The methods with bands on the scan ``key``, else (not analysed) the ticked ones."""
        analysis = self.analysis(key)
        return analysis.shown if analysis is not None else self.selected_methods()

    def guarantee_lines(self, key: Hashable | None) -> list[str]:
        """The plain-words guarantee of each shown (else ticked) method at the current alpha,
        at the value each method snaps to."""
        analysis = self.analysis(key)
        lines = []
        for m in self.shown_methods(key):
            snapped = analysis.snapped(m, self.alpha) if analysis is not None else None
            beta = analysis.beta(m) if analysis is not None else None
            used = self.alpha if snapped is None else snapped
            text = guarantee(m, used, beta)
            if snapped is not None and abs(snapped - self.alpha) > 1e-9:
                text = f"[snapped to α = {snapped:.2f}] " + text
            lines.append(text)
        return lines

    # ------------------------------------------------------------------ results
    def fail(self, message: str) -> None:
        """Record a refusal or failure (the widget also notifies it)."""
        self.last_error = message
        self.status = message

    def analysis(self, key: Hashable | None) -> an.ImageAnalysis | None:
        """The finished analysis of the scan ``key`` (None: not analysed)."""
        return None if key is None else self._analyses.get(key)

    def analyses(self) -> dict[Hashable, an.ImageAnalysis]:
        """Every finished analysis, by scan key (a copy)."""
        return dict(self._analyses)

    def store(self, key: Hashable, analysis: an.ImageAnalysis) -> None:
        self._analyses[key] = analysis
        self.results_changed.emit(key)

    def forget(self, key: Hashable) -> bool:
        """Drop the analysis of ``key``; returns whether there was one."""
        had = self._analyses.pop(key, None) is not None
        if had:
            self.results_changed.emit(key)
        return had

    def numbers(self, key: Hashable | None, truth: np.ndarray | None = None) -> dict[str, dict]:
        """Per method of ``key``'s analysis: band sizes at alpha; TPR/inner FP with ``truth``."""
        analysis = self.analysis(key)
        if analysis is None:
            return {}
        return {m: analysis.numbers(m, self.alpha, truth) for m in analysis.bands}
