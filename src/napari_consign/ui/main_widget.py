"""The dock widget: pick a scan, a model, a calibration and methods; run; explore the bands.

``ConsignWidget(viewer)`` is the npe2 widget contribution ("Conformal uncertainty"). It keeps
no choices or results itself: they, the run and every scan's analysis live in a
Qt-free :class:`~napari_consign.workspace.Workspace`, shown and edited by small panels
(:mod:`.panels`: scan and methods, model and calibration, run, alpha and guarantee, numbers,
compare, export). The widget wires the workspace to the viewer:

* **Run** starts :func:`napari_consign.analysis.run_analysis` off the GUI thread
  (:mod:`._workers`); the slice on screen is sampled first and its bands appear at once, the
  rest of the volume follows. **Cancel** stops at the next slice; a cancelled or failed run
  leaves nothing half-added.
* One **band layer** per method (:mod:`.band_layers`): the inner band filled (blue) and, in 2D,
  the outer band drawn as its boundary contour (orange); a checkbox fills the ring instead.
  3D rendering shows the filled volumes (:mod:`.band_volume`).
* The **alpha slider** (0.01-0.50, step 0.01) re-reads every method's ``Bands``: no
  recomputation. Each method snaps to its own grid (CONSIGN: 0.05 steps).
* Coronal and sagittal views are kept superior-up (:mod:`napari_consign.radiological`).
* **Numbers**, **Compare** (side by side, disagreement) and **Export** (NIfTI on the scan's
  grid; plausible segmentations drawn from CONSIGN's set).

Methods meant for tests and scripts (no dialogs): :meth:`ConsignWidget.run`,
:meth:`~ConsignWidget.cancel`, :meth:`~ConsignWidget.set_alpha`,
:meth:`~ConsignWidget.set_ring_mode`, :meth:`~ConsignWidget.set_compare`,
:meth:`~ConsignWidget.set_disagreement`, :meth:`~ConsignWidget.export_bands`,
:meth:`~ConsignWidget.add_plausible_segmentations`, :meth:`~ConsignWidget.numbers`,
:meth:`~ConsignWidget.show_analysis`; ``widget.workspace`` holds every choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtWidgets import QComboBox, QGroupBox, QScrollArea, QVBoxLayout, QWidget

from .. import analysis as an
from ..radiological import keep_radiological
from ..workspace import Workspace, check_image
from . import exports
from ._workers import Job
from .band_layers import BandLayers
from .band_views import RING_CONTOUR, RING_FILL
from .compare import CompareView
from .gl_safety import guard_layer_removal
from .layers import layer_key, legend_html
from .panels.alpha import AlphaPanel
from .panels.compare import ComparePanel
from .panels.export import ExportPanel
from .panels.inputs import ScanPanel
from .panels.numbers import NumbersPanel
from .panels.run import RunPanel
from .panels.settings import SettingsPanel
from .runner import Runner, notify, reason

if TYPE_CHECKING:
    import napari

DOCK_WIDTH = 360  # preferred width: the canvas keeps most of a 1366-pixel screen
THUMBNAIL_DELAY_MS = 150  # band thumbnails follow alpha once the slider rests this long
#: the panels' controls, reachable as attributes of the widget (tests and scripts use them)
CONTROLS = {
    "scan_panel": ("image_combo", "truth_combo", "method_boxes"),
    "settings": (
        *("model_combo", "model_label", "mode_combo", "ns_spin"),
        *("device_combo", "cal_combo", "cal_label", "max_cases_spin"),
    ),
    "run_panel": ("run_button", "cancel_button", "progress", "status"),
    "alpha_panel": (
        *("alpha_slider", "alpha_label", "guarantee_label"),
        *("caveat_label", "legend_label", "ring_fill_box"),
    ),
    "numbers_box": ("table",),
    "compare_panel": ("compare_a", "compare_b", "side_button", "disagree_button"),
    "export_panel": ("export_combo", "export_button", "n_plausible", "plausible_button"),
}


class ConsignWidget(QWidget):
    """Conformal uncertainty bands for the scan in a napari viewer."""

    notify = staticmethod(notify)
    reason = staticmethod(reason)
    check_image = staticmethod(check_image)

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.workspace = Workspace()
        self.compare = CompareView(viewer)
        self.bands = BandLayers(viewer, self.workspace, self.compare, self)
        self.volumes = self.bands.volumes
        self._thumbnails = QTimer(self)  # a drag does not repaint the layer list per tick
        self._thumbnails.setSingleShot(True)
        self._thumbnails.setInterval(THUMBNAIL_DELAY_MS)
        self._thumbnails.timeout.connect(self.bands.refresh_thumbnails)
        self.runner = Runner(
            viewer,
            self.workspace,
            self.bands,
            on_checked=lambda check: self.alpha_panel.show_caveat(check),
            on_done=self._on_image_changed,
        )
        self._build()
        events = self.workspace.events
        events.image.connect(self._on_image_changed)
        events.truth.connect(lambda *_: self.numbers_box.schedule(now=True))
        events.methods.connect(self.refresh_texts)
        events.alpha.connect(self._on_alpha)
        events.ring_fill.connect(self._on_ring_mode)
        events = viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layer_removed)
        events.reordered.connect(self._on_layers_changed)
        viewer.dims.events.ndisplay.connect(self._on_ndisplay)
        self._stop_radiological = keep_radiological(viewer)
        self._stop_gl_guard = guard_layer_removal(viewer, self)
        self._on_layers_changed()
        self.set_calibration("bundled")
        self.refresh_texts()

    def _build(self) -> None:
        """The dock: a scroll area (it fits a 1366 x 768 screen beside the canvas) holding, top
        to bottom, what a user touches most: scan and methods, Run, alpha with its guarantee
        and legend, the numbers, compare and export; model and calibration settings are folded
        away (they have working defaults)."""
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        body = QWidget()
        self.scroll.setWidget(body)
        outer.addWidget(self.scroll)
        workspace = self.workspace
        self.scan_panel = ScanPanel(self.viewer, workspace)
        self.settings = SettingsPanel(workspace)
        self.run_panel = RunPanel(workspace, on_run=self.run, on_cancel=self.cancel)
        self.alpha_panel = AlphaPanel(
            workspace, on_release=lambda: self.numbers_box.schedule(now=True)
        )
        self.numbers_box = NumbersPanel(self)
        self.compare_panel, self.export_panel = ComparePanel(self), ExportPanel(self)
        outputs = QGroupBox("Compare and export")
        lay = QVBoxLayout(outputs)
        lay.addWidget(self.compare_panel)
        lay.addWidget(self.export_panel)
        root = QVBoxLayout(body)
        root.setSpacing(4)
        for panel in (self.scan_panel, self.settings, self.run_panel, self.alpha_panel):
            root.addWidget(panel)
        root.addWidget(self.numbers_box)
        root.addWidget(outputs)
        root.addStretch(1)
        for panel, names in CONTROLS.items():
            for name in names:
                setattr(self, name, getattr(getattr(self, panel), name))
        for combo in body.findChildren(QComboBox):  # long layer names must not widen the dock
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(6)
        self.setMinimumWidth(280)
        self._update_result_controls()

    def sizeHint(self) -> QSize:
        return QSize(DOCK_WIDTH, super().sizeHint().height())

    # ================================================================== choices
    def set_model_files(self, paths: list[str | Path] | tuple = ()) -> None:
        """Use these model files (none: the bundled UNet; several: an ensemble)."""
        self.workspace.set_model_files(paths)

    def set_calibration(self, kind: str, **choice: Any) -> None:
        """Choose where calibrations come from (see :meth:`Workspace.set_calibration`)."""
        self.workspace.set_calibration(kind, **choice)

    def available_methods(self) -> dict[str, str]:
        return self.workspace.available_methods()

    def set_methods(self, methods: list[str] | tuple[str, ...]) -> None:
        """Tick exactly these methods."""
        self.workspace.set_methods(methods)

    def selected_methods(self) -> list[str]:
        return self.workspace.selected_methods()

    def image_layer(self) -> Any:
        """The image layer chosen in the widget (None if there is none)."""
        return self.scan_panel.image_layer()

    def set_image(self, layer: Any) -> None:
        self.scan_panel.choose_image(layer)

    def truth_layer(self) -> Any:
        return self.scan_panel.truth_layer()

    def set_truth(self, layer: Any | None) -> None:
        self.scan_panel.choose_truth(layer)

    def band_layer(self, method: str, image_layer: Any = None) -> Any:
        """The band layer of ``method`` for ``image_layer`` (default: the chosen image)."""
        image = image_layer if image_layer is not None else self.image_layer()
        return self.bands.layer(image, method)

    def analysis(self, image_layer: Any = None) -> an.ImageAnalysis | None:
        """The finished analysis of ``image_layer`` (default: the chosen image)."""
        image = image_layer if image_layer is not None else self.image_layer()
        return None if image is None else self.workspace.analysis(layer_key(image))

    # ================================================================== layer list
    def _on_layers_changed(self, *_: Any) -> None:
        self.scan_panel.reset_choices()

    def _on_image_changed(self, *_: Any) -> None:
        self._update_result_controls()
        self.refresh_texts()
        self.numbers_box.schedule(now=True)

    def _on_layer_removed(self, event: Any) -> None:
        layer = event.value
        self.compare.forget(layer)
        self.runner.layer_removed(layer)
        self.bands.forget(layer)
        self._on_layers_changed()
        self._update_result_controls()

    # ================================================================== running
    @property
    def busy(self) -> bool:
        return self.runner.busy

    @property
    def _job(self) -> Job | None:
        return self.runner.job

    @property
    def _prep_job(self) -> Job | None:
        return self.bands.prep_job

    def run(self, image_layer: Any = None, methods: list[str] | None = None) -> Job | None:
        """Analyse ``image_layer`` (default: the chosen one) with ``methods`` (default: ticked).

        Returns the running :class:`~._workers.Job` (None when the input was refused, with a
        notification saying why).
        """
        if not self.busy and image_layer is not None and image_layer.name in self.viewer.layers:
            self.set_image(image_layer)
        layer = image_layer if image_layer is not None else self.image_layer()
        return self.runner.start(layer, methods, on_yield=self._on_event)

    def _on_event(self, ev: Any) -> None:
        """Each run event, looked up when a run starts (a test may wrap it to act mid-run)."""
        self.runner.on_event(ev)

    def cancel(self) -> None:
        """Stop the running analysis at its next step; nothing half-made is kept."""
        self.runner.cancel()

    def fail(self, message: str) -> None:
        """Show why something was refused or failed (status line and a notification)."""
        self.runner.fail(message)

    def show_analysis(self, image: Any, analysis: an.ImageAnalysis) -> None:
        """Keep ``analysis`` as ``image``'s and show its bands, as a finished run does."""
        self.workspace.store(layer_key(image), analysis)
        for method in analysis.bands:
            self.bands.show(image, analysis, method)
        self.bands.prepare_volumes()
        self._on_image_changed()

    # ================================================================== alpha, 2D/3D
    @property
    def alpha(self) -> float:
        return self.workspace.alpha

    def set_alpha(self, alpha: float) -> float:
        """Move the slider to ``alpha`` (snapped to 0.01) and update every band layer now."""
        value = self.workspace.set_alpha(alpha)
        self.numbers_box.schedule(now=True)
        self._thumbnails.stop()
        self.bands.refresh_thumbnails()
        return value

    def _on_alpha(self, *_: Any) -> None:
        self.refresh_texts()
        self._apply_alpha()  # 2D: the plane on screen; 3D: colormaps only
        self.numbers_box.schedule()
        self._thumbnails.start()

    def _apply_alpha(self) -> None:
        self.bands.apply_alpha()
        self.compare_panel.follow_alpha()

    def refresh_texts(self, *_: Any) -> None:
        """The guarantee of each shown method at alpha, the scan's caveat and the legend."""
        image = self.image_layer()
        key = None if image is None else layer_key(image)
        analysis = self.workspace.analysis(key)
        layer = self.compare.disagreement
        pair = None if layer is None else layer.metadata.get("napari_consign_pair")
        methods = self.workspace.shown_methods(key)
        self.alpha_panel.show_texts(self.workspace.guarantee_lines(key), legend_html(methods, pair))
        self.alpha_panel.show_caveat(None if analysis is None else analysis.scan_check)

    @property
    def ring_mode(self) -> str:
        """``"contour"`` (the outer band's boundary in 2D, the default) or ``"fill"``."""
        return self.bands.ring_mode

    def set_ring_mode(self, mode: str) -> None:
        """Draw the ring as the outer band's contour (``"contour"``) or filled (``"fill"``)."""
        if mode not in (RING_CONTOUR, RING_FILL):
            raise ValueError(f"ring mode must be {RING_CONTOUR!r} or {RING_FILL!r}")
        self.workspace.ring_fill = mode == RING_FILL

    def _on_ring_mode(self, *_: Any) -> None:
        self._on_ndisplay()
        self._apply_alpha()  # new views of the same Bands: no recomputation

    def _on_ndisplay(self, *_: Any) -> None:
        self.bands.restyle()
        if self.viewer.dims.ndisplay == 2:
            self.compare_panel.follow_alpha()

    def numbers(self, image_layer: Any = None) -> dict[str, dict]:
        """Per method: band volumes at the current alpha and, with ground truth, TPR/inner FP."""
        return self.numbers_box.numbers(image_layer)

    # ================================================================== compare, export
    def _update_result_controls(self) -> None:
        analysis = self.analysis()
        methods = list(analysis.bands) if analysis is not None else []
        self.compare_panel.show_methods(methods)
        can_sample = analysis is not None and any(analysis.can_sample(m) for m in methods)
        self.export_panel.show_methods(methods, bool(can_sample))

    def set_compare(self, enabled: bool, a: str | None = None, b: str | None = None) -> bool:
        """Side by side on/off (grid mode); returns whether it is on."""
        return self.compare_panel.set_compare(enabled, a, b)

    def set_disagreement(self, enabled: bool, a: str | None = None, b: str | None = None):
        """Disagreement layer of the two methods' outer bands on/off."""
        return self.compare_panel.set_disagreement(enabled, a, b)

    def export_bands(
        self, method: str, path: str | Path, alpha: float | None = None, overwrite: bool = False
    ) -> Path:
        """Write ``method``'s bands (0/1 ring/2 inner) at ``alpha`` to NIfTI on the scan's grid.

        Raises ``ConsignIOError``/``WriteRefusedError`` (never writes over the source scan).
        """
        image = self.image_layer()
        alpha = self.alpha if alpha is None else alpha
        return exports.export_bands(image, self.analysis(image), method, path, alpha, overwrite)

    def default_export_path(self, method: str) -> Path:
        """Where *Export* proposes to write (see :func:`.exports.default_export_path`)."""
        return exports.default_export_path(self.image_layer(), method, self.alpha)

    def add_plausible_segmentations(self, method: str = "consign", n: int = 8) -> Any:
        """Add ``n`` segmentations drawn from ``method``'s set at the current alpha, as a Labels
        layer with a leading sample axis (flip through it with the first slider)."""
        image = self.image_layer()
        analysis = self.analysis(image)
        return exports.add_plausible_layer(self.viewer, image, analysis, method, self.alpha, n)

    # ================================================================== teardown
    def closeEvent(self, event: Any) -> None:
        self.cancel()
        if self.bands.prep_job is not None:
            self.bands.prep_job.cancel()
        self.disconnect_viewer()
        super().closeEvent(event)

    def disconnect_viewer(self) -> None:
        for attr in ("_stop_radiological", "_stop_gl_guard"):
            stop = getattr(self, attr, None)
            setattr(self, attr, None)
            if stop is not None:
                try:
                    stop()
                except (TypeError, ValueError, RuntimeError):
                    pass
        events = self.viewer.layers.events
        for emitter, cb in (
            (events.inserted, self._on_layers_changed),
            (events.removed, self._on_layer_removed),
            (events.reordered, self._on_layers_changed),
            (self.viewer.dims.events.ndisplay, self._on_ndisplay),
        ):
            try:
                emitter.disconnect(cb)
            except (TypeError, ValueError, RuntimeError):
                pass
