"""One analysis at a time, off the GUI thread: start, follow, cancel, roll back.

:class:`Runner` checks that a scan and the workspace's choices can run, starts
:func:`napari_consign.analysis.run_analysis` through :mod:`._workers`, feeds its events to the
workspace's :class:`~napari_consign.workspace.RunState` and to the band layers (the preview slice
first, then each method's volume), and stores the finished analysis in the workspace. A
cancelled or failed run, or one whose scan was removed, leaves nothing half-added: the layers
it added are removed and those it previewed into get their previous bands back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import analysis as an
from .._sample_data import CASE_STACK_KEY
from ..guarantee_text import method_label
from ..io.napari_layers import MODALITY_KEY
from ..workspace import RunState, Workspace, check_image
from ._workers import Job, start_job
from .band_layers import BandLayers
from .layer_geometry import spacing_of
from .layers import layer_key, same_layer

log = logging.getLogger(__name__)

#: the stages whose progress has a known length
COUNTED_STAGES = ("sampling", "bands", "calibrating", "done")


def notify(kind: str, message: str) -> None:
    from napari.utils import notifications

    getattr(notifications, f"show_{kind}")(message)


def reason(exc: BaseException) -> str:
    """A one-line reason for a notification (our errors already say what to do)."""
    text = str(exc).strip() or type(exc).__name__
    known = (ValueError, OSError, RuntimeError, KeyError, TypeError)
    return text if isinstance(exc, known) else f"{type(exc).__name__}: {text}"


def scan_input(viewer: Any, layer: Any) -> tuple[np.ndarray, int, tuple[float, ...] | None]:
    """``layer``'s scan as (Z, H, W), the slice on screen (sampled first) and the voxel
    spacing (None for a stack of 2D cases, whose sizes are in pixels)."""
    volume = np.asarray(layer.data)
    if volume.ndim == 2:
        volume, z = volume[None], 0
    else:
        try:
            z = round(float(layer.world_to_data(viewer.dims.point)[0]))
        except Exception:  # no world position: the middle slice
            z = layer.data.shape[0] // 2
        z = int(np.clip(z, 0, layer.data.shape[0] - 1))
    spacing: tuple[float, ...] | None = spacing_of(layer)
    if len(spacing) == 2:
        spacing = (1.0, *spacing)
    if layer.metadata.get(CASE_STACK_KEY):  # axis 0 is a case index: sizes in pixels
        spacing = None
    return volume, z, spacing


class Runner:
    """Runs the workspace's analysis of one scan; ``on_checked(check)`` shows the scan check
    as soon as it comes, ``on_done()`` refreshes the views once a run has stored its result."""

    def __init__(
        self,
        viewer: Any,
        workspace: Workspace,
        bands: BandLayers,
        on_checked: Callable[[Any], None],
        on_done: Callable[[], None],
    ) -> None:
        self.viewer = viewer
        self.workspace = workspace
        self.bands = bands
        self.on_checked = on_checked
        self.on_done = on_done
        self.job: Job | None = None
        self._method_cache: dict = {}
        self._sampler_cache: dict = {}

    @property
    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def fail(self, message: str) -> None:
        """Show why something was refused or failed (status line and a notification)."""
        self.workspace.fail(message)
        notify("error", message)

    def start(
        self, layer: Any, methods: list[str] | None, on_yield: Callable[[Any], None]
    ) -> Job | None:
        """Analyse ``layer`` with ``methods`` (None: the ticked ones); each event goes to
        ``on_yield`` (normally :meth:`on_event`). None when refused (the reason is shown)."""
        if self.busy:
            notify("warning", "A run is in progress: wait for it or cancel it.")
            return None
        problem = check_image(layer)
        if not problem and methods is not None:
            self.workspace.set_methods(methods)
        problem = problem or self.workspace.run_problem()
        if problem:
            self.fail(problem)
            return None
        workspace = self.workspace
        wanted = workspace.selected_methods()
        model, cal = workspace.model_spec(), workspace.calibration_spec()
        volume, z, spacing = scan_input(self.viewer, layer)
        lid = layer_key(layer)
        self.bands.images[lid] = layer
        workspace.run = RunState(
            image=layer,
            analysis=an.ImageAnalysis(shape=tuple(volume.shape), spacing_zyx=spacing),
            previous=workspace.analysis(lid),
            started=time.perf_counter(),
        )
        workspace.last_error = ""
        caches = {"method_cache": self._method_cache, "sampler_cache": self._sampler_cache}
        modality = layer.metadata.get(MODALITY_KEY) or None

        def make(cancel_event):
            return an.run_analysis(
                volume,
                model,
                cal,
                wanted,
                start_slice=z,
                cancel=cancel_event,
                spacing_zyx=spacing,
                modality=modality,
                **caches,
            )

        names = ", ".join(map(method_label, wanted))
        self._set_busy(True, f"analysing '{layer.name}' with {names}")
        job = self.job = start_job(
            make,
            on_yield=on_yield,
            on_return=self._on_return,
            on_error=self._on_error,
            on_abort=self._on_abort,
            on_finish=self._on_finish,
            start=False,
        )
        job.start()
        return job

    def cancel(self) -> None:
        """Stop the running analysis at its next step; nothing half-made is kept."""
        if self.job is not None and self.job.running:
            self.workspace.status = "cancelling…"
            self.job.cancel()

    def layer_removed(self, layer: Any) -> None:
        """``layer`` left the viewer: if it is the scan being analysed, cancel the run."""
        run = self.workspace.run
        if run is not None and same_layer(layer, run.image) and self.busy:
            run.source_removed = True
            self.bands.rollback(run)
            notify(
                "warning",
                f"'{layer.name}' was removed while it was analysed: the run was cancelled "
                "and nothing was added.",
            )
            self.cancel()

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.workspace.busy = busy
        if busy:
            self.workspace.progress = (0, 0)
        if text:
            self.workspace.status = text

    # ------------------------------------------------------------------ run events
    def on_event(self, ev: Any) -> None:
        """One event of the running analysis (on the GUI thread)."""
        run = self.workspace.run
        if run is None:
            return
        if isinstance(ev, an.Progress):
            known = ev.total > 0 and ev.stage in COUNTED_STAGES
            self.workspace.progress = (ev.done, ev.total) if known else (0, 0)
            if ev.text:
                self.workspace.status = ev.text
            return
        if run.source_removed or run.image not in self.viewer.layers:
            return
        run.analysis.apply(ev)
        if isinstance(ev, an.ScanChecked):
            self.on_checked(run.analysis.scan_check)  # shown before the bands come
        elif isinstance(ev, an.MethodsReady):
            for note in ev.notes:
                notify("info", note)
        elif isinstance(ev, an.SlicePreview):
            for method in ev.bands:
                self.bands.show(run.image, run.analysis, method, run)
        elif isinstance(ev, an.MethodBands):
            self.bands.show(run.image, run.analysis, ev.method, run)
        elif isinstance(ev, an.MethodFailed):
            notify("warning", f"{method_label(ev.method)}: {ev.message}")

    def _on_return(self, result: an.AnalysisResult) -> None:
        run = self.workspace.run
        if run is None:
            return
        if run.source_removed or run.image not in self.viewer.layers:
            self.bands.rollback(run)
            return
        run.analysis.finish(result)
        lid = layer_key(run.image)
        self.workspace.store(lid, run.analysis)
        failed = [m for m in run.created if m not in run.analysis.bands]  # preview, then failed
        self.bands.remove([(lid, m) for m in failed])
        for method in run.analysis.bands:
            self.bands.show(run.image, run.analysis, method, run)
        took = time.perf_counter() - run.started
        done = ", ".join(method_label(m) for m in run.analysis.bands) or "no method"
        self.workspace.status = f"done in {took:.1f} s: {done}"
        if not run.analysis.bands:
            notify("error", "No method could make bands for this scan (see the warnings).")
        self.on_done()

    def _on_error(self, exc: BaseException) -> None:
        run = self.workspace.run
        if run is not None:
            self.bands.rollback(run)
        log.debug("napari-consign run failed", exc_info=exc)
        self.fail(f"The run failed: {reason(exc)}")

    def _on_abort(self) -> None:
        run = self.workspace.run
        if run is not None:
            self.bands.rollback(run)
        if run is None or not run.source_removed:
            notify("info", "Run cancelled: nothing was added.")
        self.workspace.status = "cancelled"

    def _on_finish(self) -> None:
        self._set_busy(False)
        self.workspace.progress = (1 if self.workspace.status.startswith("done") else 0, 1)
        self.workspace.run = None
        self.job = None
        self.bands.sync_volumes()  # 3D: the finished methods' code volumes
        self.bands.prepare_volumes()
