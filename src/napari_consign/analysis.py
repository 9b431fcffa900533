"""The widget's plain-Python side: models, calibrations, and the analysis generator.

Nothing here imports Qt or napari, so all of it is testable without a display. The dock widget
runs :func:`run_analysis` in a worker thread (``_workers``) and feeds each event it yields to
:meth:`ImageAnalysis.apply` on the GUI thread:

1. load the model(s) and build a :class:`~napari_consign.models.Sampler`;
2. get calibrated methods: from calibration bundles (the shipped ones in
   ``sample_data/bundles/<method>.npz`` or files the user picked; a bundle made for another
   model is refused) or by calibrating now on cases with ground truth (:func:`read_cases`);
3. sample the scan slice by slice, **the slice on screen first**: as soon as it is done, every
   method's bands for that slice are yielded (:class:`SlicePreview`), so the user sees bands at
   once while the rest of the volume is sampled. Each slice's samples are reduced at once to
   what the methods need (mean and variance; for CONSIGN the top-K decomposition) and dropped,
   so memory grows with the volume, not with N_s x volume;
4. build each method's :class:`~napari_consign.conformal.Bands` for the whole volume
   (:class:`MethodBands`); a method that fails says why (:class:`MethodFailed`) and the others
   go on.

All alpha-dependent work happens in ``Bands``; the slider only reads them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .conformal.errors import Cancelled, ConformalInputError
from .conformal.errors import is_cancelled as _is_cancelled
from .conformal.registry import METHODS, method_class

#: Methods the widget offers, in display order (the core's registry).
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)
#: Methods that need more of the Monte-Carlo samples than mean and variance: CONSIGN needs each
#: slice's top-K decomposition, streamed by the sampler's ``TopK`` reducer (never the raw samples).
NEEDS_SAMPLES = frozenset({"consign"})
#: Methods that train a threshold predictor before calibration.
NEEDS_TRAINING = frozenset({"at", "coat"})


# --------------------------------------------------------------------------- methods


def bundled_bundle_dir() -> Path:
    """Folder of the shipped calibration bundles (``sample_data/bundles``; may not exist)."""
    from importlib.resources import files

    return Path(str(files("napari_consign") / "sample_data" / "bundles"))


def bundled_bundle_path(name: str) -> Path:
    """Path of the shipped bundle of method ``name`` (may not exist yet)."""
    return bundled_bundle_dir() / f"{name}.npz"


def bundled_methods() -> list[str]:
    """Methods that have a shipped bundle."""
    return [m for m in METHOD_NAMES if bundled_bundle_path(m).is_file()]


def bundle_method(path: str | Path) -> str:
    """Name of the method stored in a bundle file (raises ``BundleError`` for a bad file)."""
    from .calibration import read_bundle_header

    return str(read_bundle_header(path)["method"])


# --------------------------------------------------------------------------- choices


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


def build_sampler(spec: ModelSpec) -> Any:
    """Load the model(s) of ``spec`` on its device and return a ready ``Sampler``."""
    from .models import Sampler, load_builtin_model, load_model, resolve_device

    device = resolve_device(spec.device)
    if not spec.paths:
        models = [load_builtin_model(device=device)]
    else:
        models = [load_model(p, device=device) for p in spec.paths]
    mode = "ensemble" if len(models) > 1 else spec.mode
    n = None if mode == "ensemble" else spec.n_samples
    if mode == "tta":
        n = min(int(spec.n_samples), 4)
    threads = max(1, (os.cpu_count() or 2) - 1)  # keep a core for the GUI
    return Sampler(
        models if mode == "ensemble" else models[0],
        mode=mode,
        n_samples=n,
        device=device,
        seed=spec.seed,
        num_threads=threads if device.type == "cpu" else None,
    )


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
    from .calibration import BundleError, check_sampling, load_bundle, read_bundle_header
    from .models.loading import model_settings_id

    def checked(path: Path) -> Any:
        if model is not None:
            mode = "ensemble" if len(model.paths) > 1 else model.mode
            check_sampling(
                read_bundle_header(path),
                path.name,
                mode=mode,
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


# --------------------------------------------------------------------------- cases


@dataclass
class CalibrationCases:
    """2D units with ground truth for calibrating now (and training AT/COAT predictors)."""

    images: list[np.ndarray]  # (n, H, W) stacks, one per volume or NPZ
    masks: list[np.ndarray]
    train_images: list[np.ndarray] = field(default_factory=list)
    train_masks: list[np.ndarray] = field(default_factory=list)
    description: str = ""

    @property
    def n_units(self) -> int:
        return int(sum(len(a) for a in self.images))

    @property
    def n_train(self) -> int:
        return int(sum(len(a) for a in self.train_images))


def _subsample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=k, replace=False)) if n > k else np.arange(n)


def read_cases(
    source: str | Path, max_cases: int = 200, seed: int = 0, train_fraction: float = 1 / 3
) -> CalibrationCases:
    """Calibration units from an NPZ (``images``/``masks``, optional ``scale``, ``split`` and
    ``split_names`` as in ``sample_data/cases2d.npz``) or a folder of labelled scans
    (:mod:`napari_consign.cases`: every axial slice with structure is a unit). Without split
    names, ``train_fraction`` of the units train AT/COAT predictors and the rest calibrate. At
    most ``max_cases`` calibration units (and half as many training units) are drawn, seeded."""
    source = Path(source)
    rng = np.random.default_rng(seed)
    if not source.exists():
        raise ConformalInputError(f"{source}: no such file or folder")
    if source.is_dir():
        from .cases import read_units

        images, all_masks, desc = read_units(source)
        split = None
    else:
        try:
            with np.load(source, allow_pickle=False) as z:
                if "images" not in z.files or "masks" not in z.files:
                    raise ConformalInputError(
                        f"{source.name} needs arrays 'images' (n, H, W) and 'masks' (n, H, W); "
                        f"it holds {', '.join(z.files)}"
                    )
                images = z["images"].astype(np.float32)
                if "scale" in z.files:
                    images = images * np.asarray(z["scale"], np.float32).reshape(-1, 1, 1)
                all_masks = z["masks"]
                split = None
                if "split" in z.files and "split_names" in z.files:
                    names = [str(s) for s in z["split_names"]]
                    split = np.array(names)[z["split"]]
        except (OSError, ValueError) as exc:
            raise ConformalInputError(f"{source.name}: not a readable NPZ ({exc})") from None
        desc = source.name
    if images.ndim != 3 or all_masks.shape != images.shape:
        raise ConformalInputError(
            f"images {images.shape} and masks {all_masks.shape}: expected two (n, H, W) stacks"
        )
    all_masks = (np.asarray(all_masks) != 0).astype(np.uint8)
    if split is not None and "calibration" in set(split):
        cal = np.flatnonzero(split == "calibration")
        train = np.flatnonzero(split == "threshold")
    else:
        order = rng.permutation(len(images))
        n_train = round(train_fraction * len(images))
        train, cal = np.sort(order[:n_train]), np.sort(order[n_train:])
    cal = cal[_subsample(len(cal), max_cases, rng)]
    train = train[_subsample(len(train), max(1, max_cases // 2), rng)] if len(train) else train
    if len(cal) == 0:
        raise ConformalInputError(f"{source.name}: no calibration units")
    return CalibrationCases(
        images=[images[cal]],
        masks=[all_masks[cal]],
        train_images=[images[train]] if len(train) else [],
        train_masks=[all_masks[train]] if len(train) else [],
        description=f"{len(cal)} calibration + {len(train)} training units from {desc}",
    )


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Progress:
    """A step of long work: ``done`` of ``total`` in ``stage`` (e.g. "sampling")."""

    stage: str
    done: int
    total: int
    text: str = ""


@dataclass(frozen=True)
class MethodsReady:
    """Calibrated methods are loaded (or calibrated now) for the model ``model_id``."""

    methods: dict
    model_id: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ScanChecked:
    """The scan was compared with the model card before sampling.

    ``report`` (:class:`~napari_consign.ood.OODReport`): ``report.warnings`` lists the failed
    checks (empty when the scan looks like the training scans), ``report.notes`` facts such
    as the resampling; ``caveat`` is the sentence to show beside the guarantee (a caution when
    a check failed).
    """

    report: Any
    caveat: str


@dataclass(frozen=True)
class SlicePreview:
    """Bands of the slice on screen (``z``), as one-slice volumes ``(1, H, W)`` per method."""

    z: int
    bands: dict


@dataclass(frozen=True)
class MethodBands:
    """The bands of ``method`` for the whole volume."""

    method: str
    bands: Any


@dataclass(frozen=True)
class MethodFailed:
    """``method`` could not make bands for this scan; ``message`` says why."""

    method: str
    message: str


@dataclass
class AnalysisResult:
    """What a finished run returns (alpha-independent; the slider reads ``bands``).

    ``samples`` (raw ``(Z, N_s, H, W)`` samples) is None after a streamed run; CONSIGN's
    per-slice decomposition is ``decomposition`` (a ``DecompositionStack``, one unit per slice
    of the model grid) when CONSIGN ran, and all its bands and plausible segmentations need.
    ``mean``, ``var`` and ``bands`` are on the scan's grid; ``view``
    (:class:`~napari_consign.scan_view.ScanView`) holds the model grid, the body masks and
    the out-of-distribution report (``view.report``).
    """

    model_id: str
    mean: np.ndarray
    var: np.ndarray
    samples: np.ndarray | None
    methods: dict
    bands: dict
    errors: dict
    decomposition: Any = None
    view: Any = None  # the ScanView: model grid, body masks, OOD report


# --------------------------------------------------------------------------- numerics glue


def _check_cancel(cancel) -> None:
    if _is_cancelled(cancel):
        raise Cancelled("cancelled")


def _predictor_wants(method: Any) -> tuple[bool, bool]:
    """(image, variance): which extra inputs an AT/COAT threshold predictor was trained on."""
    cfg = method.config
    use_var = bool(cfg.use_variance)
    n_img = int(cfg.in_channels) - 1 - int(use_var)
    return n_img >= 1, use_var


def consign_volume_bands(method: Any, source: Any) -> Any:
    """CONSIGN envelope bands of a volume: one 2D unit per axial slice, stacked.

    ``source`` is the volume's raw samples ``(Z, N_s, H, W)`` or, from a streamed run, its
    ``DecompositionStack`` (one unit per slice); both give the same bands. Bundled CONSIGN
    calibrations answer only for the alphas stored in them, so those are the grid.
    """
    from .conformal.bands import Bands

    stored = method.state().get("lambda_stars") or {}
    alphas = sorted(float(a) for a in stored) or None
    count, unit = _consign_units(source)
    per_slice = [method.bands(unit(z), alphas) for z in range(count)]
    levels = per_slice[0].alphas
    for b in per_slice[1:]:
        if not np.array_equal(b.alphas, levels):  # pragma: no cover - same lambdas per slice
            raise ConformalInputError("CONSIGN levels differ between slices")
    inner = np.empty((len(levels), len(per_slice), *per_slice[0].shape), dtype=bool)
    outer = np.empty_like(inner)
    for z, b in enumerate(per_slice):
        for j, a in enumerate(levels):
            inner[j, z], outer[j, z] = b.masks(a)
    return Bands.from_mask_stack(levels, inner, outer, "consign", dict(per_slice[0].info))


def _consign_units(source: Any) -> tuple[int, Callable[[int], Any]]:
    """Slice count and ``z -> unit`` for raw samples (float32) or a ``DecompositionStack``."""
    from .conformal.consign_decomposition import DecompositionStack

    if isinstance(source, DecompositionStack):
        return len(source), source.unit
    return int(source.shape[0]), lambda z: np.asarray(source[z], dtype=np.float32)


def consign_stream_error(method: Any, n_samples: int) -> str | None:
    """Why ``method`` (CONSIGN) cannot use ``n_samples`` samples per slice, or None."""
    from .conformal.consign_decomposition import check_k

    try:
        check_k(method.k, n_samples)
    except ConformalInputError as exc:
        return str(exc)
    return None


def method_bands(
    name: str,
    method: Any,
    mean: np.ndarray,
    var: np.ndarray | None = None,
    image: np.ndarray | None = None,
    samples: Any = None,
) -> Any:
    """Bands of one calibrated method for a ``(Z, H, W)`` volume's MC statistics.

    ``samples`` (CONSIGN only): the raw samples ``(Z, N_s, H, W)`` or their per-slice
    ``DecompositionStack``.
    """
    if name in ("crc", "pixelwise"):
        return method.bands(mean)
    if name in ("at", "coat"):
        want_img, want_var = _predictor_wants(method)
        img = np.asarray(image, dtype=np.float32) if want_img and image is not None else None
        return method.bands(mean, img, var if want_var else None)
    if name == "consign":
        if samples is None:
            raise ConformalInputError("CONSIGN needs the Monte-Carlo samples of the scan")
        return consign_volume_bands(method, samples)
    raise ConformalInputError(f"unknown method {name!r}")


# --------------------------------------------------------------------------- calibration


def calibrate_methods(
    sampler: Any,
    cases: CalibrationCases,
    wanted: Sequence[str],
    *,
    seed: int = 0,
    device: str = "cpu",
    epochs: int | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    body_rule: bool = False,
) -> Generator[Progress, None, dict]:
    """Calibrate ``wanted`` methods now: sample every unit with ``sampler``, then fit.

    Yields :class:`Progress`; returns ``{method: calibrated object}``. AT/COAT train their
    threshold predictor on ``cases.train_*`` (never the calibration units). Samples are
    streamed: each unit is reduced to its MC mean (and, for CONSIGN, its top-K decomposition)
    as it is sampled, so the raw samples of all units never exist at once. ``body_rule``:
    scores outside each unit's body mask are set to 0, as the analysis does for a scan.
    """
    from .conformal.dataset import SegmentationSet
    from .conformal.registry import MethodOptions
    from .models import Moments, SamplingCancelled, TopK

    k = max(1, min(5, sampler.n_samples - 1))
    stream = "consign" in wanted
    if stream:
        from .conformal.consign_decomposition import check_k

        check_k(k, sampler.n_samples)  # fail before sampling, with the reason
    train_needed = any(m in NEEDS_TRAINING for m in wanted)
    if train_needed and cases.n_train == 0:
        raise ConformalInputError(
            "AT and COAT need training units for their threshold predictor, separate from the "
            "calibration units; give more cases or untick AT/COAT"
        )
    stacks = [("calibration", cases.images, cases.masks, stream)]
    if train_needed:
        stacks.append(("training", cases.train_images, cases.train_masks, False))
    total = sum(sum(len(a) for a in imgs) for _, imgs, _, _ in stacks)
    done = 0
    sets: dict[str, SegmentationSet] = {}
    decomps = []
    for label, imgs, masks, with_topk in stacks:
        means = []
        for stack in imgs:
            reducers = [Moments()] + ([TopK(k)] if with_topk else [])
            gen = sampler.iter_volume(stack, reducers, cancel=cancel)
            try:
                while True:
                    step = next(gen)
                    yield Progress("sampling", done + step.done, total, f"sampling {label} cases")
            except StopIteration as stop:
                res = stop.value
            except SamplingCancelled as exc:
                raise Cancelled(str(exc)) from None
            done += len(stack)
            means.append(res["mean"])
            if with_topk:
                decomps.append(res["topk"])
        scores = np.clip(np.concatenate(means), 0.0, 1.0)
        units = np.concatenate(imgs)
        if body_rule:
            from .body_mask import body_mask, restrict_scores

            scores = restrict_scores(scores, np.stack([body_mask(u) for u in units]))
        sets[label] = SegmentationSet(None, scores, np.concatenate(masks), units)
    out: dict[str, Any] = {}
    for i, name in enumerate(wanted):
        _check_cancel(cancel)
        yield Progress("calibrating", i, len(wanted), f"calibrating {name.upper()}")
        cls = method_class(name)
        cal = sets["calibration"]
        if name == "consign":
            k = max(1, min(5, sampler.n_samples - 1))
            method = cls(MethodOptions(k=k, seed=seed, device=device))
            method.fit(_join_stacks(decomps), cal.masks)
            method.calibrate_alphas()
        elif name in NEEDS_TRAINING:
            opts = MethodOptions(seed=seed, device=device, epochs=epochs or 60)
            method = cls(opts)
            method.train(sets["training"], cancel=cancel)
            method.fit_shifts(cal)
        else:
            method = cls(MethodOptions(seed=seed, device=device))
            method.calibrate(cal)
        out[name] = method
    yield Progress("calibrating", len(wanted), len(wanted), "calibrated")
    return out


def _join_stacks(stacks: list) -> Any:
    """One ``DecompositionStack`` of all units of ``stacks`` (the same units, in order)."""
    if len(stacks) == 1:
        return stacks[0]
    from .conformal.consign_decomposition import DecompositionStack

    first = stacks[0]
    return DecompositionStack(
        np.concatenate([d.mean for d in stacks]),
        np.concatenate([d.components for d in stacks]),
        np.concatenate([d.singular for d in stacks]),
        np.concatenate([d.coefficients for d in stacks]),
        first.n_classes,
        first.binary,
    )


def save_bundles(methods: dict, folder: str | Path, model_id: str) -> tuple[list[Path], list[str]]:
    """Save each calibrated method as ``<folder>/<method>.npz``; returns (written, problems)."""
    from .calibration import save_bundle

    written, problems = [], []
    for name, m in methods.items():
        try:
            written.append(save_bundle(Path(folder) / f"{name}.npz", m, model_id, overwrite=True))
        except Exception as exc:  # a method without bundle support must not lose the others
            problems.append(f"{name.upper()}: bundle not saved ({exc})")
    return written, problems


# --------------------------------------------------------------------------- the run


def run_analysis(
    volume: np.ndarray,
    model: ModelSpec | Any,
    calibration: CalibrationSpec,
    wanted: Sequence[str],
    *,
    start_slice: int | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    method_cache: dict | None = None,
    sampler_cache: dict | None = None,
    spacing_zyx: tuple[float, ...] | None = None,
    modality: str | None = None,
) -> Generator[Any, None, AnalysisResult]:
    """The whole computation for one scan, as a generator of events (see the module doc).

    ``volume`` is ``(Z, H, W)``. ``model`` is a :class:`ModelSpec` or a ready ``Sampler``.
    ``method_cache`` (optional dict owned by the caller) keeps calibrations made now, keyed by
    model identity and calibration source, so they are not redone for every scan;
    ``sampler_cache`` likewise keeps the loaded model per :class:`ModelSpec`. Cancelling
    raises :class:`~napari_consign.conformal.errors.Cancelled` at the next step.

    ``spacing_zyx`` (mm) and ``modality`` (DICOM code, e.g. "MR") describe the scan: with a
    model card, the scan is resampled to the model's spacing, checked (:class:`ScanChecked`,
    yielded before any sampling) and the bands are bounded by its body mask; results come back
    on the scan's grid.
    """
    from .models import Moments, SamplingCancelled, TopK
    from .models.card import card_of
    from .scan_view import ScanView

    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ConformalInputError(f"expected a (Z, H, W) volume, got shape {volume.shape}")
    wanted = list(dict.fromkeys(wanted))
    if not wanted:
        raise ConformalInputError("choose at least one method")
    yield Progress("model", 0, 1, "loading the model")
    sampler = _cached_sampler(model, sampler_cache) if isinstance(model, ModelSpec) else model
    model_id = str(sampler.identity)
    _check_cancel(cancel)
    card = card_of(sampler)
    view = ScanView.prepare(volume, card, spacing_zyx, modality)
    yield ScanChecked(view.report, _caveat(view.report))
    _check_cancel(cancel)

    notes: list[str] = []
    if calibration.kind == "calibrate":
        key = (model_id, calibration.key(), sampler.n_samples)
        cached = (method_cache or {}).get(key, {})
        todo = [m for m in wanted if m not in cached]
        methods = {m: cached[m] for m in wanted if m in cached}
        if todo:
            if calibration.source is None:
                raise ConformalInputError("choose an NPZ file or a folder to calibrate on")
            cases = read_cases(calibration.source, calibration.max_cases)
            notes.append(f"calibrated on {cases.description}")
            fitted = yield from calibrate_methods(
                sampler,
                cases,
                todo,
                epochs=calibration.epochs,
                cancel=cancel,
                body_rule=view.body_model is not None,
            )
            methods.update(fitted)
            if method_cache is not None:
                method_cache.setdefault(key, {}).update(fitted)
            if calibration.save_dir is not None:
                written, problems = save_bundles(fitted, calibration.save_dir, model_id)
                notes += [f"saved {p}" for p in written] + problems
    else:
        spec = model if isinstance(model, ModelSpec) else None
        methods = load_calibrated(calibration, wanted, model_id, spec)
    yield MethodsReady(dict(methods), model_id, tuple(notes))
    _check_cancel(cancel)

    shown = None if start_slice is None else int(np.clip(start_slice, 0, volume.shape[0] - 1))
    volume = view.volume  # the model grid from here on
    n_slices = volume.shape[0]
    start = None if shown is None else view.model_slice(shown)
    moments = Moments()
    reducers = [moments]
    # CONSIGN streams its per-slice top-K decomposition, never the raw samples; a CONSIGN whose
    # K does not fit N_s fails alone, with the reason, and the other methods go on.
    topk, stream_error = None, None
    if "consign" in methods:
        stream_error = consign_stream_error(methods["consign"], sampler.n_samples)
        if stream_error is None:
            topk = TopK(methods["consign"].k)
            reducers.append(topk)
    total = n_slices + len(methods)
    gen = sampler.iter_volume(volume, reducers, start_slice=start, cancel=cancel)
    first = True
    try:
        while True:
            try:
                step = next(gen)
            except StopIteration:
                break
            yield Progress("sampling", step.done, total, f"sampling slice {step.z}")
            if first:
                first = False
                z = step.z
                z_shown = view.source_slice(z) if shown is None else shown
                preview = {}
                for name, m in methods.items():
                    try:
                        b = method_bands(
                            name,
                            m,
                            view.scores(moments.mean[z : z + 1], z),
                            moments.var[z : z + 1],
                            volume[z : z + 1],
                            None if topk is None else topk.out.select(z),
                        )
                        preview[name] = view.slice_bands_to_source(b, z_shown)
                    except (ConformalInputError, ValueError):
                        pass  # reported once, for the whole volume, below
                yield SlicePreview(z_shown, preview)
    except SamplingCancelled as exc:
        raise Cancelled(str(exc)) from None
    decomposition = None if topk is None else topk.out
    bands: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for i, (name, m) in enumerate(methods.items()):
        _check_cancel(cancel)
        yield Progress("bands", n_slices + i, total, f"building {name.upper()} bands")
        try:
            if name == "consign" and stream_error is not None:
                raise ConformalInputError(stream_error)
            b = method_bands(name, m, view.scores(moments.mean), moments.var, volume, decomposition)
            b = view.bands_to_source(b)
        except (ConformalInputError, ValueError) as exc:
            errors[name] = str(exc)
            yield MethodFailed(name, str(exc))
            continue
        bands[name] = b
        yield MethodBands(name, b)
    yield Progress("done", total, total, "done")
    return AnalysisResult(
        model_id=model_id,
        mean=view.map_to_source(view.scores(moments.mean)),
        var=view.map_to_source(moments.var),
        samples=None,
        methods=dict(methods),
        bands=bands,
        errors=errors,
        decomposition=decomposition,
        view=view,
    )


def _caveat(report: Any) -> str:
    from .ood import guarantee_caveat

    return guarantee_caveat(report)


def _cached_sampler(spec: ModelSpec, cache: dict | None) -> Any:
    if cache is None:
        return build_sampler(spec)
    stamps = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in spec.paths)
    key = (spec, stamps)
    if key not in cache:
        cache.clear()  # one loaded model at a time
        cache[key] = build_sampler(spec)
    return cache[key]


def run_to_completion(gen: Generator, on_event: Callable[[Any], None] | None = None) -> Any:
    """Drive an analysis generator inline (tests, scripts); returns its result."""
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(ev)


# --------------------------------------------------------------------------- state


@dataclass
class ImageAnalysis:
    """Per analysed image: its bands per method and what the numbers need.

    Owned by the widget on the GUI thread; fed by :meth:`apply` with the generator's events.
    """

    shape: tuple[int, ...]  # (Z, H, W)
    spacing_zyx: tuple[float, ...] | None = None
    model_id: str = ""
    methods: dict = field(default_factory=dict)
    bands: dict = field(default_factory=dict)
    preview: dict = field(default_factory=dict)  # method -> (z, one-slice Bands)
    errors: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    result: AnalysisResult | None = None
    scan_check: ScanChecked | None = None  # OOD report and the guarantee's caveat

    def apply(self, event: Any) -> None:
        """Record one event of :func:`run_analysis`."""
        if isinstance(event, ScanChecked):
            self.scan_check = event
        elif isinstance(event, MethodsReady):
            self.methods = dict(event.methods)
            self.model_id = event.model_id
            self.notes = event.notes
        elif isinstance(event, SlicePreview):
            for name, b in event.bands.items():
                self.preview[name] = (event.z, b)
        elif isinstance(event, MethodBands):
            self.bands[event.method] = event.bands
            self.preview.pop(event.method, None)
        elif isinstance(event, MethodFailed):
            self.errors[event.method] = event.message
            self.preview.pop(event.method, None)

    def finish(self, result: AnalysisResult) -> None:
        self.result = result
        self.bands.update(result.bands)
        self.errors.update(result.errors)
        self.preview.clear()

    @property
    def shown(self) -> list[str]:
        """Methods with bands to display (whole volume or the preview slice), in order."""
        names = set(self.bands) | set(self.preview)
        return [m for m in METHOD_NAMES if m in names] + sorted(names - set(METHOD_NAMES))

    def snapped(self, method: str, alpha: float) -> float | None:
        b = self.bands.get(method)
        if b is None and method in self.preview:
            b = self.preview[method][1]
        return None if b is None else b.snap(alpha)

    def beta(self, method: str) -> float | None:
        b = self.bands.get(method)
        return None if b is None else b.info.get("beta")

    def numbers(self, method: str, alpha: float, truth: np.ndarray | None = None) -> dict:
        """Band volumes (voxels, mL) at ``alpha``; TPR and inner false positives vs ``truth``."""
        from .conformal.metrics import band_sizes, inner_loss, tpr, voxel_volume

        b = self.bands[method]
        inner, outer = b.masks(alpha)
        out: dict[str, float] = {"alpha": b.snap(alpha)}
        spacing = self.spacing_zyx if self.spacing_zyx and len(self.spacing_zyx) == 3 else None
        out.update(band_sizes(inner, outer, spacing))
        if truth is not None:
            fg = np.asarray(truth).reshape(inner.shape) != 0
            fp = int(np.count_nonzero(inner & ~fg))
            out["tpr"] = tpr(outer, fg)
            out["inner_loss"] = inner_loss(inner, fg)
            out["inner_fp_voxels"] = fp
            vol = voxel_volume(spacing)
            if vol is not None:
                out["inner_fp_ml"] = fp * vol / 1000.0
        return out

    def can_sample(self, method: str) -> bool:
        m = self.methods.get(method)
        if m is None or not hasattr(m, "sample") or method not in self.bands:
            return False
        if method == "consign":
            res = self.result
            return res is not None and (res.decomposition is not None or res.samples is not None)
        return self.result is not None

    def plausible(self, method: str, alpha: float, n: int = 8, seed: int = 0) -> np.ndarray:
        """``n`` segmentations drawn from ``method``'s set at ``alpha``: ``(n, Z, H, W)`` uint8.

        CONSIGN draws from each slice's box, built from the run's per-slice decomposition (or,
        for a result that holds them, the raw samples: the same draws).
        """
        if not self.can_sample(method):
            raise ConformalInputError(f"{method.upper()} offers no sampling of its set here")
        m, res = self.methods[method], self.result
        a = self.bands[method].snap(alpha)
        if method != "consign":
            out = np.zeros((n, *self.shape), dtype=np.uint8)
            for z in range(self.shape[0]):
                sd = (seed + z) if seed is not None else None
                out[:, z] = m.sample(res.mean[z], a, n, seed=sd)
            return out
        source = res.decomposition if res.decomposition is not None else res.samples
        count, unit = _consign_units(source)  # CONSIGN's units are the model grid's slices
        draws = np.stack(
            [
                m.sample(unit(z), a, n, seed=(seed + z) if seed is not None else None)
                for z in range(count)
            ],
            axis=1,
        ).astype(np.uint8)
        view = res.view
        if view is None:
            return draws
        return np.stack([view.labels_to_source(d) for d in draws])
