"""The run generator: one scan from model to every method's bands, as a stream of events."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from ..conformal.errors import ConformalInputError
from ..conformal.method import ScanStats
from ..models.card import card_of
from ..ood import guarantee_caveat
from ..scan_view import ScanView
from .bundles import CalibrationSpec, load_calibrated, save_bundles
from .calibrate_now import calibrate_methods, check_cancel
from .events import (
    AnalysisResult,
    MethodBands,
    MethodFailed,
    MethodsReady,
    Progress,
    ScanChecked,
    SlicePreview,
)
from .session import ModelSpec, cached_sampler
from .units import read_cases


def _samples_error(method: Any, n_samples: int) -> str | None:
    """Why ``method`` cannot use ``n_samples`` samples per slice, or None."""
    try:
        method.check_samples(n_samples)
    except ConformalInputError as exc:
        return str(exc)
    return None


def _stats(method: Any, mean: np.ndarray, var: np.ndarray, image: np.ndarray, topk: dict,
           z: int | None = None) -> ScanStats:  # fmt: skip
    """What ``method`` reads of the run's statistics (slice ``z`` only, when given)."""
    c = method.sample_components()
    samples = None if c is None else topk[c].out
    if z is not None and samples is not None:
        samples = samples.select(z)
    return ScanStats(mean, var, image, samples)


def _methods(
    calibration: CalibrationSpec, model: Any, sampler: Any, model_id: str, wanted: list[str],
    view: Any, cancel: Any, method_cache: dict | None, notes: list[str],
) -> Generator[Any, None, dict]:  # fmt: skip
    """Calibrated methods for ``wanted``: from bundles, or calibrated now (cached)."""
    if calibration.kind != "calibrate":
        spec = model if isinstance(model, ModelSpec) else None
        return load_calibrated(calibration, wanted, model_id, spec)
    key = (model_id, calibration.key(), sampler.n_samples)
    cached = (method_cache or {}).get(key, {})
    todo = [m for m in wanted if m not in cached]
    methods = {m: cached[m] for m in wanted if m in cached}
    if todo:
        if calibration.source is None:
            raise ConformalInputError("choose an NPZ file or a folder to calibrate on")
        cases = read_cases(calibration.source, calibration.max_cases, card=card_of(sampler))
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
    return methods


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
    """The whole computation for one scan, as a generator of events (see the package doc).

    ``volume`` is ``(Z, H, W)``. ``model`` is a :class:`ModelSpec` or a ready ``Sampler``.
    ``method_cache`` (optional dict owned by the caller) keeps calibrations made now, keyed by
    model identity and calibration source, so they are not redone for every scan;
    ``sampler_cache`` (default: the process's, :func:`~.session.cached_sampler`) keeps the
    loaded model per :class:`ModelSpec`. Cancelling raises
    :class:`~napari_consign.conformal.errors.Cancelled` at the next step.

    ``spacing_zyx`` (mm) and ``modality`` (DICOM code, e.g. "MR") describe the scan: with a
    model card, the scan is resampled to the model's spacing, checked (:class:`ScanChecked`,
    yielded before any sampling) and the bands are bounded by its body mask; results come back
    on the scan's grid.
    """
    from ..models import Moments, TopK

    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ConformalInputError(f"expected a (Z, H, W) volume, got shape {volume.shape}")
    wanted = list(dict.fromkeys(wanted))
    if not wanted:
        raise ConformalInputError("choose at least one method")
    yield Progress("model", 0, 1, "loading the model")
    sampler = cached_sampler(model, sampler_cache) if isinstance(model, ModelSpec) else model
    model_id = str(sampler.identity)
    check_cancel(cancel)
    view = ScanView.prepare(volume, card_of(sampler), spacing_zyx, modality)
    yield ScanChecked(view.report, guarantee_caveat(view.report))
    check_cancel(cancel)

    notes: list[str] = []
    methods = yield from _methods(
        calibration, model, sampler, model_id, wanted, view, cancel, method_cache, notes
    )
    yield MethodsReady(dict(methods), model_id, tuple(notes))
    check_cancel(cancel)

    shown = None if start_slice is None else int(np.clip(start_slice, 0, volume.shape[0] - 1))
    volume = view.volume  # the model grid from here on
    n_slices = volume.shape[0]
    start = None if shown is None else view.model_slice(shown)
    moments = Moments()
    # Methods that read the samples get each slice's top-K decomposition, streamed (never the
    # raw samples); one whose K does not fit N_s fails alone, with the reason.
    stream_errors = {
        name: err
        for name, m in methods.items()
        if m.sample_components() is not None
        and (err := _samples_error(m, sampler.n_samples)) is not None
    }
    topk = {
        c: TopK(c)
        for name, m in methods.items()
        if name not in stream_errors and (c := m.sample_components()) is not None
    }
    total = n_slices + len(methods)
    gen = sampler.iter_volume(volume, [moments, *topk.values()], start_slice=start, cancel=cancel)
    first = True
    for step in gen:
        yield Progress("sampling", step.done, total, f"sampling slice {step.z}")
        if not first:
            continue
        first = False
        z = step.z
        z_shown = view.source_slice(z) if shown is None else shown
        preview = {}
        for name, m in methods.items():
            if name in stream_errors:
                continue  # reported once, for the whole volume, below
            try:
                mean = view.scores(moments.mean[z : z + 1], z)
                stats = _stats(m, mean, moments.var[z : z + 1], volume[z : z + 1], topk, z)
                preview[name] = view.slice_bands_to_source(m.bands(stats), z_shown)
            except (ConformalInputError, ValueError):
                pass  # reported once, for the whole volume, below
        yield SlicePreview(z_shown, preview)
    bands: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for i, (name, m) in enumerate(methods.items()):
        check_cancel(cancel)
        yield Progress("bands", n_slices + i, total, f"building {name.upper()} bands")
        try:
            if name in stream_errors:
                raise ConformalInputError(stream_errors[name])
            stats = _stats(m, view.scores(moments.mean), moments.var, volume, topk)
            b = view.bands_to_source(m.bands(stats))
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
        decomposition=next(iter(topk.values())).out if topk else None,
        view=view,
    )


def run_to_completion(gen: Generator, on_event: Callable[[Any], None] | None = None) -> Any:
    """Drive an analysis generator inline (tests, scripts); returns its result."""
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(ev)
