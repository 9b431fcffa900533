"""The dock widget: pick a scan, a model, a calibration and methods; run; explore the bands.

``ConsignWidget(viewer)`` is the npe2 widget contribution ("Conformal uncertainty"). It is a
thin shell over :mod:`.analysis` (models, calibrations, the analysis generator), :mod:`.layers`
(lazy band layers on the scan's geometry) and :mod:`.compare` (side by side, disagreement):

* **Run** starts :func:`napari_consign.analysis.run_analysis` off the GUI thread
  (:mod:`._workers`); the slice on screen is sampled first and its bands appear at once, the
  rest of the volume follows.
  **Cancel** stops at the next slice; a cancelled or failed run leaves nothing half-added.
* One **band layer** per method: the inner band filled (blue) and, in 2D, the outer band drawn
  as its boundary contour (orange), computed per displayed slice by the lazy view; a checkbox
  fills the ring instead. 3D rendering shows the filled volumes.
* The **alpha slider** (0.01-0.50, step 0.01) re-reads every method's ``Bands``: no
  recomputation. Each method snaps to its own grid (CONSIGN: 0.05 steps) and the table shows the
  value used. In 2D the band layers compare only the slice on screen; in 3D each method's
  bands are a code volume uploaded once, and a tick swaps its colormap (:mod:`.band_volume`).
* Coronal and sagittal views are kept superior-up (:mod:`napari_consign.radiological`).
* **Numbers**: band volumes (mL) per method; with a ground-truth labels layer, the outer band's
  TPR and the inner band's false positives on this scan.
* **Compare**: any two methods side by side (grid mode) and a disagreement layer.
* **Export** the bands of one method to NIfTI on the scan's own grid; for CONSIGN (and the
  pixel-wise baseline), add a stack of plausible segmentations drawn from the set.

Methods meant for tests and scripts (no dialogs): :meth:`ConsignWidget.run`,
:meth:`~ConsignWidget.cancel`, :meth:`~ConsignWidget.set_alpha`,
:meth:`~ConsignWidget.set_ring_mode`, :meth:`~ConsignWidget.set_compare`,
:meth:`~ConsignWidget.set_disagreement`, :meth:`~ConsignWidget.export_bands`,
:meth:`~ConsignWidget.add_plausible_segmentations`,
:meth:`~ConsignWidget.numbers`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from .. import analysis as an
from .._sample_data import CASE_STACK_KEY
from ..guarantee_text import guarantee, method_label
from ..io.napari_layers import MODALITY_KEY
from ..radiological import keep_radiological
from ._workers import Job, start_job
from .band_volume import BandCodes, VolumeBands, step_colormap, volume_layer_kwargs
from .compare import CompareView
from .gl_safety import guard_layer_removal, remove_layers
from .layers import (
    KIND_KEY,
    RING_CONTOUR,
    RING_FILL,
    BandsView,
    PreviewView,
    _LevelCache,
    add_band_layer,
    band_layer_name,
    band_metadata,
    data_to_world_matrix,
    is_plugin_layer,
    layer_key,
    legend_html,
    same_layer,
    samples_layer_name,
    solid_ring,
    spacing_of,
    stacked_affine,
    style_band_layer,
    update_band_metadata,
)

if TYPE_CHECKING:
    import napari

log = logging.getLogger(__name__)

ALPHA_STEPS = 50  # slider 1..50 -> alpha 0.01..0.50
DEFAULT_ALPHA = 0.10
#: the slider's alphas: the 3D code volumes precompute one colormap column per step
SLIDER_ALPHAS = np.arange(1, ALPHA_STEPS + 1) / 100.0
NUMBERS_DELAY_MS = 150
MODEL_BUILTIN, MODEL_FILES = "Bundled lesion UNet", "Model file(s)…"
CAL_BUNDLED, CAL_FILES, CAL_NOW = "Shipped bundles", "Bundle file(s)…", "Calibrate now…"
#: (key, header, format); sizes in mL (the unit is in the group's title)
NUMBER_COLUMNS = (
    ("alpha", "α", "{:.2f}"),
    ("outer_ml", "outer", "{:.2f}"),
    ("inner_ml", "inner", "{:.2f}"),
    ("ring_ml", "ring", "{:.2f}"),
    ("tpr", "TPR", "{:.2f}"),
    ("inner_fp_ml", "FP", "{:.2f}"),  # the inner band's false positives
)
#: For images without a physical volume (a stack of 2D cases): sizes in pixels.
PIXEL_COLUMNS = tuple(
    (key.replace("_ml", "_voxels"), header, "{:d}" if key.endswith("_ml") else fmt)
    for key, header, fmt in NUMBER_COLUMNS
)
NUMBERS_TITLE = {True: "Numbers (this scan; sizes in mL)", False: "Numbers (sizes in pixels)"}
DOCK_WIDTH = 360  # preferred width: the canvas keeps most of a 1366-pixel screen


def _notify(kind: str, message: str) -> None:
    from napari.utils import notifications

    getattr(notifications, f"show_{kind}")(message)


def _message(exc: BaseException) -> str:
    """A one-line reason for a notification (our errors already say what to do)."""
    text = str(exc).strip() or type(exc).__name__
    known = (ValueError, OSError, RuntimeError, KeyError, TypeError)
    return text if isinstance(exc, known) else f"{type(exc).__name__}: {text}"


@dataclass
class _Run:
    image: Any
    analysis: an.ImageAnalysis
    previous: an.ImageAnalysis | None
    created: set = field(default_factory=set)  # methods whose layer this run added
    started: float = 0.0
    source_removed: bool = False


class ConsignWidget(QWidget):
    """Conformal uncertainty bands for the scan in a napari viewer."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.compare = CompareView(viewer)
        # keyed by ``layer.unique_id``: napari's plugin menu hands the widget a proxy viewer
        # whose ``layers[name]`` is a new proxy object each time, so ``id()`` is no identity
        self._analyses: dict[Hashable, an.ImageAnalysis] = {}
        self._images: dict[Hashable, Any] = {}
        self._band_layers: dict[tuple[Hashable, str], Any] = {}
        self._views: dict[tuple[Hashable, str], Any] = {}  # the data we gave each band layer
        self._method_cache: dict = {}
        self._sampler_cache: dict = {}
        self._level_cache = _LevelCache(size=4)
        self._job: Job | None = None
        self._prep_job: Job | None = None  # 3D code volumes computed after a run
        self._run: _Run | None = None
        self._model_files: tuple[Path, ...] = ()
        self._bundle_files: tuple[Path, ...] = ()
        self._cal_source: Path | None = None
        self._save_dir: Path | None = None
        self._given: dict | None = None
        self._alpha = DEFAULT_ALPHA
        self._last_error = ""
        self._numbers_timer = QTimer(self)
        self._numbers_timer.setSingleShot(True)
        self._numbers_timer.setInterval(NUMBERS_DELAY_MS)
        self._numbers_timer.timeout.connect(self._update_numbers)
        self.volumes = VolumeBands(viewer, SLIDER_ALPHAS)
        self._build()
        events = viewer.layers.events
        events.inserted.connect(self._on_layers_changed)
        events.removed.connect(self._on_layer_removed)
        events.reordered.connect(self._on_layers_changed)
        viewer.dims.events.ndisplay.connect(self._on_ndisplay)
        self._stop_radiological = keep_radiological(viewer)
        self._stop_gl_guard = guard_layer_removal(viewer, self)
        self._on_layers_changed()
        self.set_calibration("bundled")
        self._update_alpha_text()

    # ================================================================== building
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
        root = QVBoxLayout(body)
        root.setSpacing(4)
        root.addWidget(self._build_scan())
        root.addWidget(self._build_settings())
        root.addLayout(self._build_run())
        root.addWidget(self._build_alpha())
        root.addWidget(self._build_numbers())
        root.addWidget(self._build_compare())
        root.addStretch(1)
        for combo in body.findChildren(QComboBox):  # long layer names must not widen the dock
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(6)
        self.setMinimumWidth(280)
        self._update_result_controls()

    def sizeHint(self) -> QSize:
        return QSize(DOCK_WIDTH, super().sizeHint().height())

    def _build_scan(self) -> QGroupBox:
        box = QGroupBox("Scan and methods")
        form = QFormLayout(box)
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("the image layer to analyse (2D or 3D, one channel)")
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.truth_combo = QComboBox()
        self.truth_combo.setToolTip("optional ground-truth labels on the same grid, for TPR")
        self.truth_combo.currentIndexChanged.connect(lambda *_: self._schedule_numbers(now=True))
        form.addRow("image", self.image_combo)
        form.addRow("ground truth", self.truth_combo)
        grid = QGridLayout()
        self.method_boxes: dict[str, QCheckBox] = {}
        for i, m in enumerate(an.METHOD_NAMES):
            cb = QCheckBox(method_label(m))
            cb.toggled.connect(lambda *_: self._update_alpha_text())
            self.method_boxes[m] = cb
            grid.addWidget(cb, i // 3, i % 3)
        grid.setHorizontalSpacing(6)
        form.addRow(grid)  # full width: no label column beside the check boxes
        return box

    def _build_settings(self) -> QCollapsible:
        self.settings = QCollapsible("Model, sampling and calibration")
        body = QWidget()
        form = QFormLayout(body)
        row = QHBoxLayout()
        self.model_combo = QComboBox()
        self.model_combo.addItems([MODEL_BUILTIN, MODEL_FILES])
        self.model_combo.activated.connect(self._on_model_choice)
        self.model_label = QLabel("")
        row.addWidget(self.model_combo)
        row.addWidget(self.model_label, 1)
        form.addRow("model", row)
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("MC dropout", "mc_dropout")
        self.mode_combo.addItem("test-time flips (≤ 4)", "tta")
        self.mode_combo.setToolTip("an ensemble (several files) gives one sample per member")
        form.addRow("sampling", self.mode_combo)
        self.ns_spin = QSpinBox()
        self.ns_spin.setRange(2, 200)
        self.ns_spin.setValue(10)
        self.ns_spin.setToolTip("Monte-Carlo samples per slice")
        form.addRow("samples", self.ns_spin)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", *self._devices()])
        form.addRow("device", self.device_combo)
        row = QHBoxLayout()
        self.cal_combo = QComboBox()
        self.cal_combo.addItems([CAL_BUNDLED, CAL_FILES, CAL_NOW])
        self.cal_combo.activated.connect(self._on_cal_choice)
        self.cal_label = QLabel("")
        self.cal_label.setWordWrap(True)
        row.addWidget(self.cal_combo)
        row.addWidget(self.cal_label, 1)
        form.addRow("calibration", row)
        self.max_cases_spin = QSpinBox()
        self.max_cases_spin.setRange(10, 100000)
        self.max_cases_spin.setValue(200)
        self.max_cases_spin.setToolTip("calibrate now: at most this many calibration units")
        form.addRow("max cases", self.max_cases_spin)
        self.settings.addWidget(body)
        return self.settings

    def _build_run(self) -> QVBoxLayout:
        lay = QVBoxLayout()
        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        lay.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        return lay

    def _build_alpha(self) -> QGroupBox:
        box = QGroupBox("Error level α")
        lay = QVBoxLayout(box)
        row = QHBoxLayout()
        self.alpha_slider = QSlider(Qt.Orientation.Horizontal)
        self.alpha_slider.setRange(1, ALPHA_STEPS)
        self.alpha_slider.setValue(round(DEFAULT_ALPHA * 100))
        self.alpha_slider.setTracking(True)
        self.alpha_slider.valueChanged.connect(self._on_slider)
        self.alpha_slider.sliderReleased.connect(self._on_slider_released)
        self.alpha_label = QLabel("")
        self.alpha_label.setMinimumWidth(70)
        row.addWidget(self.alpha_slider, 1)
        row.addWidget(self.alpha_label)
        lay.addLayout(row)
        self.guarantee_label = QLabel("")
        self.guarantee_label.setWordWrap(True)
        lay.addWidget(self.guarantee_label)
        self.caveat_label = QLabel("")  # the scan checks: the guarantee's scope, or a caution
        self.caveat_label.setWordWrap(True)
        lay.addWidget(self.caveat_label)
        self.legend_label = QLabel("")
        self.legend_label.setWordWrap(True)
        self.legend_label.setTextFormat(Qt.TextFormat.RichText)
        lay.addWidget(self.legend_label)
        self.ring_fill_box = QCheckBox("fill the ring in 2D")
        self.ring_fill_box.setToolTip(
            "off: the outer band is drawn as its boundary over the filled inner band; "
            "on: the ring (outer minus inner) is filled. 3D always shows filled volumes."
        )
        self.ring_fill_box.toggled.connect(lambda *_: self._on_ring_mode())
        lay.addWidget(self.ring_fill_box)
        return box

    def _build_numbers(self) -> QGroupBox:
        box = self.numbers_box = QGroupBox(NUMBERS_TITLE[True])
        lay = QVBoxLayout(box)
        self.table = QTableWidget(0, len(NUMBER_COLUMNS))
        self.table.setHorizontalHeaderLabels([c[1] for c in NUMBER_COLUMNS])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(30)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setWordWrap(True)
        self.table.setMinimumHeight(90)
        self.table.setMaximumHeight(140)
        lay.addWidget(self.table)
        return box

    def _build_compare(self) -> QGroupBox:
        box = QGroupBox("Compare and export")
        lay = QVBoxLayout(box)
        self.compare_a = QComboBox()
        self.compare_b = QComboBox()
        self.side_button = QPushButton("Side by side")
        self.side_button.setCheckable(True)
        self.side_button.toggled.connect(lambda on: self.set_compare(on))
        self.disagree_button = QPushButton("Disagreement")
        self.disagree_button.setCheckable(True)
        self.disagree_button.toggled.connect(lambda on: self.set_disagreement(on))
        self.export_combo = QComboBox()
        self.export_button = QPushButton("Export NIfTI…")
        self.export_button.clicked.connect(self._export_dialog)
        self.n_plausible = QSpinBox()
        self.n_plausible.setRange(1, 100)
        self.n_plausible.setValue(8)
        self.n_plausible.setToolTip("how many segmentations to draw")
        self.plausible_button = QPushButton("Sample the set")
        self.plausible_button.setToolTip(
            "CONSIGN / pixel-wise: add a stack of plausible segmentations drawn from the set"
        )
        self.plausible_button.clicked.connect(self._plausible_clicked)
        rows = (
            (self.compare_a, QLabel("vs"), self.compare_b),
            (self.side_button, self.disagree_button),
            (self.export_combo, self.export_button),
            (self.n_plausible, self.plausible_button),
        )
        for widgets in rows:
            row = QHBoxLayout()
            for w in widgets:
                row.addWidget(w, 0 if isinstance(w, QLabel) else 1)
            lay.addLayout(row)
        return box

    @staticmethod
    def _devices() -> list[str]:
        try:
            from ..models import available_devices

            return list(available_devices())
        except Exception:  # torch broken: the run reports it clearly
            return ["cpu"]

    # ================================================================== choices
    def _on_model_choice(self, *_: Any) -> None:
        if self.model_combo.currentText() == MODEL_FILES:
            paths, _ = QFileDialog.getOpenFileNames(
                self,
                "Model file(s): several files form an ensemble",
                "",
                "Models (*.pt *.pth *.ts *.safetensors);;All files (*)",
            )
            if paths:
                self.set_model_files(paths)
            elif not self._model_files:
                self.model_combo.setCurrentText(MODEL_BUILTIN)

    def set_model_files(self, paths: list[str | Path] | tuple = ()) -> None:
        """Use these model files (none: the bundled UNet; several: an ensemble)."""
        self._model_files = tuple(Path(p) for p in paths)
        self.model_combo.setCurrentText(MODEL_FILES if self._model_files else MODEL_BUILTIN)
        self.model_label.setText(self.model_spec().describe if self._model_files else "")

    def model_spec(self) -> an.ModelSpec:
        return an.ModelSpec(
            paths=self._model_files if self.model_combo.currentText() == MODEL_FILES else (),
            mode=self.mode_combo.currentData() or "mc_dropout",
            n_samples=int(self.ns_spin.value()),
            device=self.device_combo.currentText(),
        )

    def _on_cal_choice(self, *_: Any) -> None:
        choice = self.cal_combo.currentText()
        if choice == CAL_FILES:
            paths, _ = QFileDialog.getOpenFileNames(
                self, "Calibration bundle(s)", "", "Bundles (*.npz)"
            )
            if paths:
                self.set_calibration("files", files=paths)
            else:
                self.set_calibration("bundled")
        elif choice == CAL_NOW:
            path, _ = QFileDialog.getOpenFileName(
                self,
                "Cases with ground truth: an NPZ (images, masks); cancel to pick a folder",
                "",
                "NPZ (*.npz)",
            )
            if not path:
                path = QFileDialog.getExistingDirectory(
                    self, "Folder of image + mask NIfTI files (X.nii.gz, X_mask.nii.gz)"
                )
            if path:
                self.set_calibration("calibrate", source=path)
            else:
                self.set_calibration("bundled")
        else:
            self.set_calibration("bundled")

    def set_calibration(
        self,
        kind: str,
        *,
        files: list | tuple = (),
        source: str | Path | None = None,
        save_dir: str | Path | None = None,
        methods: dict | None = None,
    ) -> None:
        """Choose where calibrations come from: "bundled", "files" (bundle files),
        "calibrate" (now, on ``source``: NPZ or folder) or "given" (calibrated ``methods``)."""
        combo = {"bundled": CAL_BUNDLED, "files": CAL_FILES, "calibrate": CAL_NOW}
        self._cal_kind = kind
        self._bundle_files = tuple(Path(p) for p in files)
        self._cal_source = Path(source) if source is not None else None
        self._save_dir = Path(save_dir) if save_dir is not None else None
        self._given = dict(methods) if methods else None
        self.cal_combo.setCurrentText(combo.get(kind, CAL_BUNDLED))
        text = {
            "bundled": "",
            "files": ", ".join(p.name for p in self._bundle_files),
            "calibrate": self._cal_source.name if self._cal_source else "",
            "given": "calibrated methods given by a script",
        }.get(kind, "")
        self.cal_label.setText(text)
        self.max_cases_spin.setEnabled(kind == "calibrate")
        self._refresh_methods()
        settings = self.bundle_settings()
        if settings.get("n_samples"):
            self.ns_spin.setValue(int(settings["n_samples"]))

    def calibration_spec(self) -> an.CalibrationSpec:
        kind = getattr(self, "_cal_kind", "bundled")
        return an.CalibrationSpec(
            kind=kind,
            files=self._bundle_files,
            source=self._cal_source,
            max_cases=int(self.max_cases_spin.value()),
            save_dir=self._save_dir,
            methods=self._given,
        )

    def bundle_settings(self) -> dict:
        """Sampling settings the chosen bundles were calibrated with (``extra`` of their
        headers: ``n_samples``, ``mode``), when they record them and agree."""
        kind = getattr(self, "_cal_kind", "bundled")
        if kind == "bundled":
            paths = [an.bundled_bundle_path(m) for m in an.METHOD_NAMES]
        elif kind == "files":
            paths = list(self._bundle_files)
        else:
            return {}
        seen: dict[str, set] = {"n_samples": set(), "mode": set()}
        for p in paths:
            if not p.is_file():
                continue
            try:
                from ..calibration import read_bundle_header

                extra = read_bundle_header(p).get("extra") or {}
            except Exception:
                continue
            for key in seen:
                if extra.get(key) is not None:
                    seen[key].add(extra[key])
        return {k: next(iter(v)) for k, v in seen.items() if len(v) == 1}

    def available_methods(self) -> dict[str, str]:
        """Method -> "" when it can run with the chosen calibration, else why not."""
        kind = getattr(self, "_cal_kind", "bundled")
        out: dict[str, str] = {}
        for m in an.METHOD_NAMES:
            if kind == "bundled":
                ok = an.bundled_bundle_path(m).is_file()
                out[m] = "" if ok else f"no shipped bundle ({an.bundled_bundle_path(m).name})"
            elif kind == "files":
                held = set()
                for p in self._bundle_files:
                    try:
                        held.add(an.bundle_method(p))
                    except Exception:
                        continue
                out[m] = "" if m in held else "none of the chosen bundle files holds it"
            elif kind == "given":
                out[m] = "" if self._given and m in self._given else "not given"
            else:
                out[m] = ""
        return out

    def _refresh_methods(self) -> None:
        avail = self.available_methods()
        checked = [m for m, cb in self.method_boxes.items() if cb.isChecked()]
        for m, cb in self.method_boxes.items():
            why = avail.get(m, "")
            cb.setEnabled(not why)
            cb.setToolTip(why or guarantee(m, self._alpha))
            if why:
                cb.setChecked(False)
        if not any(cb.isChecked() for cb in self.method_boxes.values()):
            defaults = [m for m in ("crc", "coat") if not avail.get(m)]
            if not defaults:
                defaults = [m for m in an.METHOD_NAMES if not avail.get(m)][:1]
            for m in checked or defaults:
                if not avail.get(m):
                    self.method_boxes[m].setChecked(True)

    def set_methods(self, methods: list[str] | tuple[str, ...]) -> None:
        """Tick exactly these methods."""
        for m, cb in self.method_boxes.items():
            cb.setChecked(m in methods)

    def selected_methods(self) -> list[str]:
        return [m for m, cb in self.method_boxes.items() if cb.isChecked() and cb.isEnabled()]

    # ================================================================== layers list
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [
            lyr for lyr in self.viewer.layers if isinstance(lyr, Image) and not is_plugin_layer(lyr)
        ]

    def _truth_layers(self) -> list[Any]:
        from napari.layers import Labels

        return [
            lyr
            for lyr in self.viewer.layers
            if isinstance(lyr, Labels) and not is_plugin_layer(lyr)
        ]

    def _on_layers_changed(self, *_: Any) -> None:
        self._fill_combo(self.image_combo, [lyr.name for lyr in self._image_layers()])
        self._fill_combo(self.truth_combo, ["(none)"] + [lyr.name for lyr in self._truth_layers()])
        if self.truth_combo.currentText() == "(none)":
            guess = self._guess_truth()
            if guess is not None:
                self.truth_combo.setCurrentText(guess.name)

    def _guess_truth(self) -> Any:
        """A labels layer that is evidently the chosen image's ground truth: the same shape and
        named as one (``truth``, ``mask``, ``label``, ``lesion``, ``seg``), else None."""
        image = self.image_layer()
        if image is None:
            return None
        hints = ("truth", "mask", "label", "lesion", "seg")
        for layer in self._truth_layers():
            same_grid = tuple(layer.data.shape) == tuple(image.data.shape)
            if same_grid and any(h in layer.name.lower() for h in hints):
                return layer
        return None

    @staticmethod
    def _fill_combo(combo: QComboBox, names: list[str]) -> None:
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        if current in names:
            combo.setCurrentText(current)
        combo.blockSignals(False)
        if combo.currentText() != current:
            combo.currentIndexChanged.emit(combo.currentIndex())

    def image_layer(self) -> Any:
        """The image layer chosen in the widget (None if there is none)."""
        name = self.image_combo.currentText()
        if name not in self.viewer.layers and self._image_layers():  # e.g. renamed
            self._on_layers_changed()
            name = self.image_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def set_image(self, layer: Any) -> None:
        self.image_combo.setCurrentText(layer.name)

    def set_truth(self, layer: Any | None) -> None:
        self.truth_combo.setCurrentText("(none)" if layer is None else layer.name)

    def truth_layer(self) -> Any:
        name = self.truth_combo.currentText()
        if name == "(none)" or name not in self.viewer.layers:
            return None
        return self.viewer.layers[name]

    def _on_image_changed(self, *_: Any) -> None:
        self._update_result_controls()
        self._update_alpha_text()
        self._schedule_numbers(now=True)

    def _on_layer_removed(self, event: Any) -> None:
        layer = event.value
        self.compare.forget(layer)
        run = self._run
        if run is not None and same_layer(layer, run.image) and self.busy:
            run.source_removed = True
            self._rollback(run)
            _notify(
                "warning",
                f"'{layer.name}' was removed while it was analysed: the run was cancelled "
                "and nothing was added.",
            )
            self.cancel()
        self.volumes.forget(layer)
        for key, lyr in list(self._band_layers.items()):
            if same_layer(lyr, layer):
                del self._band_layers[key]
                self._views.pop(key, None)
                self.volumes.remove(key)
        lid = layer_key(layer)
        if lid in self._images:
            self._analyses.pop(lid, None)
            self._images.pop(lid, None)
            for key in [k for k in self._band_layers if k[0] == lid]:
                self._band_layers.pop(key, None)
        self._on_layers_changed()
        self._update_result_controls()

    # ================================================================== running
    @property
    def busy(self) -> bool:
        return self._job is not None and self._job.running

    def check_image(self, layer: Any) -> str:
        """Why ``layer`` cannot be analysed ("" when it can)."""
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

    def run(self, image_layer: Any = None, methods: list[str] | None = None) -> Job | None:
        """Analyse ``image_layer`` (default: the chosen one) with ``methods`` (default: ticked).

        Returns the running :class:`~._workers.Job` (None when the input was refused, with a
        notification saying why).
        """
        if self.busy:
            _notify("warning", "A run is in progress: wait for it or cancel it.")
            return None
        if image_layer is not None and image_layer.name in self.viewer.layers:
            self.set_image(image_layer)
        layer = image_layer if image_layer is not None else self.image_layer()
        problem = self.check_image(layer)
        if problem:
            self._fail(problem)
            return None
        if methods is not None:
            self.set_methods(methods)
        wanted = self.selected_methods()
        if not wanted:
            self._fail("Tick at least one method (methods without a calibration are greyed).")
            return None
        cal = self.calibration_spec()
        if cal.kind == "calibrate" and cal.source is None:
            self._fail("Choose an NPZ file or a folder of image + mask NIfTI files to calibrate.")
            return None
        if cal.kind == "files" and not cal.files:
            self._fail("Choose calibration bundle files first.")
            return None
        settings = self.bundle_settings() if cal.kind in ("bundled", "files") else {}
        model = self.model_spec()
        ensemble = len(model.paths) > 1
        if (
            not ensemble
            and settings.get("n_samples")
            and int(settings["n_samples"]) != model.n_samples
        ):
            self._fail(
                f"The calibration was made with {settings['n_samples']} Monte-Carlo samples "
                f"per slice; this run asks for {model.n_samples}, whose scores have another "
                f"distribution, so the guarantee would not hold. Set samples to "
                f"{settings['n_samples']} (Model, sampling and calibration) or calibrate now."
            )
            return None
        volume = np.asarray(layer.data)
        if volume.ndim == 2:
            volume = volume[None]
            z = 0
        else:
            z = self._visible_slice(layer)
        spacing: tuple[float, ...] | None = spacing_of(layer)
        if len(spacing) == 2:
            spacing = (1.0, *spacing)
        if layer.metadata.get(CASE_STACK_KEY):  # axis 0 is a case index: sizes in pixels
            spacing = None
        lid = layer_key(layer)
        self._images[lid] = layer
        run = _Run(
            image=layer,
            analysis=an.ImageAnalysis(
                shape=tuple(volume.shape), spacing_zyx=None if spacing is None else spacing
            ),
            previous=self._analyses.get(lid),
            started=time.perf_counter(),
        )
        self._run = run
        self._last_error = ""
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
        self._job = start_job(
            make,
            on_yield=self._on_event,
            on_return=self._on_return,
            on_error=self._on_error,
            on_abort=self._on_abort,
            on_finish=self._on_finish,
            start=False,
        )
        job = self._job
        job.start()
        return job

    def cancel(self) -> None:
        """Stop the running analysis at its next step; nothing half-made is kept."""
        if self._job is not None and self._job.running:
            self.status.setText("cancelling…")
            self._job.cancel()

    def _visible_slice(self, layer: Any) -> int:
        try:
            data_point = layer.world_to_data(self.viewer.dims.point)
            z = round(float(data_point[0]))
        except Exception:
            z = layer.data.shape[0] // 2
        return int(np.clip(z, 0, layer.data.shape[0] - 1))

    def _fail(self, message: str) -> None:
        self._last_error = message
        self.status.setText(message)
        _notify("error", message)

    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if busy:
            self.progress.setRange(0, 0)
        if text:
            self.status.setText(text)

    # ------------------------------------------------------------------ run events
    def _on_event(self, ev: Any) -> None:
        run = self._run
        if run is None:
            return
        if isinstance(ev, an.Progress):
            if ev.total > 0 and ev.stage in ("sampling", "bands", "calibrating", "done"):
                self.progress.setRange(0, ev.total)
                self.progress.setValue(ev.done)
            else:
                self.progress.setRange(0, 0)
            if ev.text:
                self.status.setText(ev.text)
            return
        if run.source_removed or run.image not in self.viewer.layers:
            return
        run.analysis.apply(ev)
        if isinstance(ev, an.ScanChecked):
            self._update_caveat(run.analysis)  # shown before the bands come
        elif isinstance(ev, an.MethodsReady):
            for note in ev.notes:
                _notify("info", note)
        elif isinstance(ev, an.SlicePreview):
            for method in ev.bands:
                self._show_method(run.image, run.analysis, method, run)
        elif isinstance(ev, an.MethodBands):
            self._show_method(run.image, run.analysis, ev.method, run)
        elif isinstance(ev, an.MethodFailed):
            _notify("warning", f"{method_label(ev.method)}: {ev.message}")

    def _on_return(self, result: an.AnalysisResult) -> None:
        run = self._run
        if run is None:
            return
        if run.source_removed or run.image not in self.viewer.layers:
            self._rollback(run)
            return
        run.analysis.finish(result)
        lid = layer_key(run.image)
        self._analyses[lid] = run.analysis
        failed = [m for m in run.created if m not in run.analysis.bands]  # preview, then failed
        self._remove_band_layers([(lid, m) for m in failed])
        for method in run.analysis.bands:
            self._show_method(run.image, run.analysis, method, run)
        took = time.perf_counter() - run.started
        done = ", ".join(method_label(m) for m in run.analysis.bands) or "no method"
        self.status.setText(f"done in {took:.1f} s: {done}")
        if not run.analysis.bands:
            _notify("error", "No method could make bands for this scan (see the warnings).")
        self._update_result_controls()
        self._update_alpha_text()
        self._schedule_numbers(now=True)

    def _on_error(self, exc: BaseException) -> None:
        run = self._run
        if run is not None:
            self._rollback(run)
        log.debug("napari-consign run failed", exc_info=exc)
        self._fail(f"The run failed: {_message(exc)}")

    def _on_abort(self) -> None:
        run = self._run
        if run is not None:
            self._rollback(run)
        if run is None or not run.source_removed:
            _notify("info", "Run cancelled: nothing was added.")
        self.status.setText("cancelled")

    def _on_finish(self) -> None:
        self._set_busy(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if self.status.text().startswith("done") else 0)
        self._run = None
        self._job = None
        self._sync_volumes()  # 3D: the finished methods' code volumes
        self._prepare_volumes()

    def _prepare_volumes(self) -> None:
        """Compute the 3D code volumes in a worker now (2D), so the first 3D frame only
        uploads them."""
        bands = [b for analysis in self._analyses.values() for b in analysis.bands.values()]
        self.volumes.drop_prepared(bands)
        if not bands or (self._prep_job is not None and self._prep_job.running):
            return
        self._prep_job = start_job(lambda _cancel: self.volumes.prepare(bands))

    def _rollback(self, run: _Run) -> None:
        """Remove what a failed or cancelled run added; restore layers it previewed into."""
        lid = layer_key(run.image)
        self._remove_band_layers([(lid, method) for method in run.created])
        run.created.clear()
        prev = run.previous
        if prev is not None and run.image in self.viewer.layers:
            for method in prev.bands:
                layer = self._band_layers.get((lid, method))
                if layer is not None and layer in self.viewer.layers:
                    layer.data = self._view(run.image, prev, method)

    def _remove_band_layers(self, keys: list[tuple[Hashable, str]]) -> None:
        for key in keys:
            self.volumes.remove(key)
            self._views.pop(key, None)
        layers = [self._band_layers.pop(key, None) for key in keys]
        layers = [lyr for lyr in layers if lyr is not None]
        for layer in layers:
            self.compare.forget(layer)
        remove_layers(self.viewer, layers, self)

    # ------------------------------------------------------------------ band layers
    def _view(self, image: Any, analysis: an.ImageAnalysis, method: str) -> Any:
        squeeze, ring = image.ndim == 2, self.ring_mode
        if method in analysis.bands:
            bands = analysis.bands[method]
            return BandsView(bands, self._alpha, squeeze, self._level_cache, ring=ring)
        z, b = analysis.preview[method]
        return PreviewView(analysis.shape, z, b, self._alpha, squeeze, ring=ring)

    def _show_method(self, image: Any, analysis: an.ImageAnalysis, method: str, run=None) -> None:
        if method not in analysis.bands and method not in analysis.preview:
            return
        lid = layer_key(image)
        data = self._view(image, analysis, method)
        bands = data.bands
        layer = self._band_layers.get((lid, method))
        if layer is None or layer not in self.viewer.layers:
            meta = band_metadata(image, method, bands, self._alpha, kind="bands")
            solid = solid_ring(self.ring_mode, self.viewer.dims.ndisplay)
            layer = add_band_layer(self.viewer, image, method, data, meta, solid_ring=solid)
            self._band_layers[(lid, method)] = layer
            if run is not None:
                run.created.add(method)
        else:
            meta = band_metadata(image, method, bands, self._alpha, kind="bands")
            layer.metadata = meta
            layer.data = data
        self._views[(lid, method)] = data

    def band_layer(self, method: str, image_layer: Any = None) -> Any:
        """The band layer of ``method`` for ``image_layer`` (default: the chosen image)."""
        image = image_layer if image_layer is not None else self.image_layer()
        return None if image is None else self._band_layers.get((layer_key(image), method))

    def analysis(self, image_layer: Any = None) -> an.ImageAnalysis | None:
        """The finished analysis of ``image_layer`` (default: the chosen image)."""
        image = image_layer if image_layer is not None else self.image_layer()
        return None if image is None else self._analyses.get(layer_key(image))

    # ================================================================== alpha
    @property
    def alpha(self) -> float:
        return self._alpha

    def set_alpha(self, alpha: float) -> float:
        """Move the slider to ``alpha`` (snapped to 0.01) and update every band layer now."""
        value = int(np.clip(round(float(alpha) * 100), 1, ALPHA_STEPS))
        self.alpha_slider.blockSignals(True)
        self.alpha_slider.setValue(value)
        self.alpha_slider.blockSignals(False)
        self._alpha = value / 100
        self._update_alpha_text()
        self._apply_alpha()
        self._update_numbers()
        return self._alpha

    def _on_slider(self, value: int) -> None:
        self._alpha = value / 100
        self._update_alpha_text()
        self._apply_alpha()  # 2D: the plane on screen; 3D: colormaps only
        self._schedule_numbers()

    def _on_slider_released(self) -> None:
        self._schedule_numbers(now=True)

    def _apply_alpha(self) -> None:
        """Point every band layer at its Bands at the current alpha (no recomputation).

        In 3D the labels layers that hide behind a code volume are left alone (they are
        brought up to date when the view returns to 2D); the volumes get a new colormap."""
        run = self._run
        three_d = self.viewer.dims.ndisplay == 3
        self.volumes.set_alpha(self._alpha)
        for (lid, method), layer in list(self._band_layers.items()):
            if three_d and self.volumes.layer((lid, method)) is not None:
                continue
            image = self._images.get(lid)
            if image is None or layer not in self.viewer.layers:
                continue
            analysis = self._analyses.get(lid)
            if run is not None and same_layer(run.image, image):
                if method in run.analysis.bands or method in run.analysis.preview:
                    analysis = run.analysis
            if analysis is None or (
                method not in analysis.bands and method not in analysis.preview
            ):
                continue
            current = self._views.get((lid, method))  # ours, not napari's proxy of it
            if (
                isinstance(current, BandsView)
                and method in analysis.bands
                and current.bands is analysis.bands[method]
                and current.ring == self.ring_mode
            ):
                # the same bands at another alpha: retarget the view and re-slice the plane on
                # screen (assigning new data costs napari a dims update: ~40 ms a layer)
                current.retarget(self._alpha)
                layer.refresh()
                data = current
            else:
                data = self._view(image, analysis, method)
                layer.data = data
                self._views[(lid, method)] = data
            update_band_metadata(layer, data.bands, self._alpha)
        self._update_disagreement()

    def _update_alpha_text(self) -> None:
        a = self._alpha
        self.alpha_label.setText(f"α = {a:.2f}")
        analysis = self.analysis()
        lines = []
        methods = analysis.shown if analysis is not None else self.selected_methods()
        for m in methods:
            snapped = analysis.snapped(m, a) if analysis is not None else None
            beta = analysis.beta(m) if analysis is not None else None
            used = a if snapped is None else snapped
            text = guarantee(m, used, beta)
            if snapped is not None and abs(snapped - a) > 1e-9:
                text = f"[snapped to α = {snapped:.2f}] " + text
            lines.append(text)
        self.guarantee_label.setText("\n".join(lines))
        self._update_caveat(analysis)
        pair = None
        layer = self.compare.disagreement
        if layer is not None:
            pair = layer.metadata.get("napari_consign_pair")
        self.legend_label.setText(legend_html(list(methods), pair))

    def _update_caveat(self, analysis: an.ImageAnalysis | None) -> None:
        """Beside the guarantee, persistently: for which scans it holds, or a caution when the
        scan failed a check against the model card (modality, spacing, intensities)."""
        check = None if analysis is None else analysis.scan_check
        if check is None:
            self.caveat_label.setText("")
            return
        self.caveat_label.setText(check.caveat)
        caution = bool(getattr(check.report, "warnings", ()))
        self.caveat_label.setStyleSheet("color: #e69f00; font-weight: bold;" if caution else "")

    @property
    def ring_mode(self) -> str:
        """``"contour"`` (the outer band's boundary in 2D, the default) or ``"fill"``."""
        return RING_FILL if self.ring_fill_box.isChecked() else RING_CONTOUR

    def set_ring_mode(self, mode: str) -> None:
        """Draw the ring as the outer band's contour (``"contour"``) or filled (``"fill"``)."""
        if mode not in (RING_CONTOUR, RING_FILL):
            raise ValueError(f"ring mode must be {RING_CONTOUR!r} or {RING_FILL!r}")
        self.ring_fill_box.setChecked(mode == RING_FILL)

    def _on_ring_mode(self) -> None:
        self._on_ndisplay()
        self._apply_alpha()  # new views of the same Bands: no recomputation

    def _on_ndisplay(self, *_: Any) -> None:
        nd = self.viewer.dims.ndisplay
        for layer in self._band_layers.values():
            if layer in self.viewer.layers:
                style_band_layer(layer, self.ring_mode, nd)
        self._sync_volumes()
        if nd == 2:
            self._apply_alpha()  # the labels layers were left behind while in 3D

    def _sync_volumes(self) -> None:
        """3D: each finished method's bands as a code volume (one upload); 2D: labels."""
        entries = {}
        run = self._run
        for (lid, method), layer in self._band_layers.items():
            image, analysis = self._images.get(lid), self._analyses.get(lid)
            if image is None or layer not in self.viewer.layers:
                continue
            running = run is not None and same_layer(run.image, image)
            bands = None if running or analysis is None else analysis.bands.get(method)
            entries[(lid, method)] = (layer, bands, method, image)
        three_d = self.viewer.dims.ndisplay == 3
        self.volumes.sync(entries, self._alpha, three_d, self._add_volume_layer)

    def _add_volume_layer(self, codes: BandCodes, method: str, image: Any, key: Any) -> Any:
        bands = self._analyses[key[0]].bands[method]
        step = self.volumes.step_of(self._alpha)
        name = f"napari-consign {method} step {step} #{id(codes)}"
        return self.viewer.add_image(
            codes.codes,
            name=f"{band_layer_name(image.name, method)} (3D)",
            colormap=step_colormap(method, codes.table[:, step], name),
            metadata=band_metadata(image, method, bands, self._alpha, kind="bands-3d"),
            **volume_layer_kwargs(codes, data_to_world_matrix(image)),
        )

    # ================================================================== numbers
    def _schedule_numbers(self, now: bool = False) -> None:
        if now:
            self._numbers_timer.stop()
            self._update_numbers()
        else:
            self._numbers_timer.start()

    def truth_array(self, image: Any = None) -> np.ndarray | None:
        """The chosen ground truth as a (Z, H, W) array, or None (warns on a shape mismatch)."""
        truth = self.truth_layer()
        image = image if image is not None else self.image_layer()
        if truth is None or image is None:
            return None
        arr = np.asarray(truth.data)
        if arr.shape != tuple(image.data.shape):
            self.status.setText(
                f"ground truth '{truth.name}' has shape {arr.shape}, the scan "
                f"{tuple(image.data.shape)}: TPR not shown"
            )
            return None
        return arr[None] if arr.ndim == 2 else arr

    def numbers(self, image_layer: Any = None) -> dict[str, dict]:
        """Per method: band volumes at the current alpha and, with ground truth, TPR/inner FP."""
        image = image_layer if image_layer is not None else self.image_layer()
        analysis = self.analysis(image)
        if analysis is None:
            return {}
        truth = self.truth_array(image)
        return {m: analysis.numbers(m, self._alpha, truth) for m in analysis.bands}

    def _update_numbers(self) -> None:
        rows = self.numbers()
        physical = all("outer_ml" in v for v in rows.values())
        columns = NUMBER_COLUMNS if physical else PIXEL_COLUMNS
        self.numbers_box.setTitle(NUMBERS_TITLE[physical])
        self.table.setHorizontalHeaderLabels([c[1] for c in columns])
        self.table.setRowCount(len(rows))
        self.table.setVerticalHeaderLabels([method_label(m) for m in rows])
        for i, values in enumerate(rows.values()):
            for j, (key, _, fmt) in enumerate(columns):
                v = values.get(key)
                text = "" if v is None or (isinstance(v, float) and np.isnan(v)) else fmt.format(v)
                self.table.setItem(i, j, QTableWidgetItem(text))

    # ================================================================== compare
    def _update_result_controls(self) -> None:
        analysis = self.analysis()
        methods = list(analysis.bands) if analysis is not None else []
        labels = [method_label(m) for m in methods]
        for combo, default in ((self.compare_a, 0), (self.compare_b, 1), (self.export_combo, 0)):
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            for m, lab in zip(methods, labels, strict=True):
                combo.addItem(lab, m)
            if current in methods:
                combo.setCurrentIndex(methods.index(current))
            elif methods:
                combo.setCurrentIndex(min(default, len(methods) - 1))
            combo.blockSignals(False)
        two = len(methods) >= 2
        self.side_button.setEnabled(two or self.compare.enabled)
        self.disagree_button.setEnabled(two or self.compare.disagreement is not None)
        self.export_button.setEnabled(bool(methods))
        can_sample = analysis is not None and any(analysis.can_sample(m) for m in methods)
        self.plausible_button.setEnabled(bool(can_sample))

    def _pair(self, a: str | None, b: str | None) -> tuple[str, str] | None:
        analysis = self.analysis()
        if analysis is None:
            self._fail("Run the analysis first.")
            return None
        a = a or self.compare_a.currentData()
        b = b or self.compare_b.currentData()
        if a is None or b is None or a == b:
            self._fail("Choose two different methods to compare.")
            return None
        missing = [m for m in (a, b) if m not in analysis.bands]
        if missing:
            self._fail(f"No bands for {', '.join(map(method_label, missing))} on this scan.")
            return None
        for combo, m in ((self.compare_a, a), (self.compare_b, b)):
            idx = combo.findData(m)
            if idx >= 0:
                combo.setCurrentIndex(idx)
        return a, b

    def set_compare(self, enabled: bool, a: str | None = None, b: str | None = None) -> bool:
        """Side by side on/off (grid mode); returns whether it is on."""
        if not enabled:
            self.compare.disable()
            self._sync_button(self.side_button, False)
            return False
        pair = self._pair(a, b)
        image = self.image_layer()
        if pair is None:
            self._sync_button(self.side_button, False)
            return False
        layers = [self.band_layer(m) for m in pair]
        if any(lyr is None or lyr not in self.viewer.layers for lyr in layers):
            self._fail("A band layer of these methods was removed; run again to recreate it.")
            self._sync_button(self.side_button, False)
            return False
        self.compare.enable(image, *layers)
        self._sync_button(self.side_button, True)
        return True

    def set_disagreement(self, enabled: bool, a: str | None = None, b: str | None = None):
        """Disagreement layer of the two methods' outer bands on/off."""
        if not enabled:
            self.compare.hide_disagreement()
            self._sync_button(self.disagree_button, False)
            self._update_alpha_text()
            return None
        pair = self._pair(a, b)
        if pair is None:
            self._sync_button(self.disagree_button, False)
            return None
        analysis, image = self.analysis(), self.image_layer()
        ba, bb = analysis.bands[pair[0]], analysis.bands[pair[1]]
        layer = self.compare.show_disagreement(
            image, pair[0], ba, self._alpha, pair[1], bb, self._alpha
        )
        self._sync_button(self.disagree_button, True)
        self._update_alpha_text()
        return layer

    def _update_disagreement(self) -> None:
        layer = self.compare.disagreement
        if layer is None:
            return
        pair = layer.metadata.get("napari_consign_pair")
        for lid, analysis in self._analyses.items():
            if pair and all(m in analysis.bands for m in pair):
                image = self._images.get(lid)
                if image is not None and image.name in layer.name:
                    ba, bb = analysis.bands[pair[0]], analysis.bands[pair[1]]
                    self.compare.update_disagreement(ba, self._alpha, bb, self._alpha)
                    return

    @staticmethod
    def _sync_button(button: QPushButton, on: bool) -> None:
        button.blockSignals(True)
        button.setChecked(on)
        button.blockSignals(False)

    # ================================================================== export
    def export_bands(
        self, method: str, path: str | Path, alpha: float | None = None, overwrite: bool = False
    ) -> Path:
        """Write ``method``'s bands (0/1 ring/2 inner) at ``alpha`` to NIfTI on the scan's grid.

        Raises ``ConsignIOError``/``WriteRefusedError`` (never writes over the source scan).
        """
        from ..io import Geometry, geometry_from_metadata, write_nifti
        from .layers import data_to_world_matrix

        image = self.image_layer()
        analysis = self.analysis(image)
        if analysis is None or method not in analysis.bands:
            raise ValueError(f"no {method_label(method)} bands for this scan: run it first")
        labels = analysis.bands[method].labels(self._alpha if alpha is None else alpha)
        if image.ndim == 2:
            labels = labels[0]
        geometry = geometry_from_metadata(image.metadata)
        if geometry is None or tuple(geometry.shape) != labels.shape:
            geometry = Geometry.from_affine(labels.shape, data_to_world_matrix(image))
            _notify(
                "warning",
                f"'{image.name}' was not opened with the napari-consign reader: the bands are "
                "written on the layer's napari placement, not on a source file's grid.",
            )
        return write_nifti(path, labels, geometry, overwrite=overwrite)

    def default_export_path(self, method: str) -> Path:
        """Where *Export* proposes to write: beside the source scan (else the working folder),
        a name without spaces, e.g. ``demo_scan_crc_bands_a0.10.nii.gz``."""
        from ..io import geometry_from_metadata

        image = self.image_layer()
        stem = safe_file_stem(image.name if image is not None else "scan")
        folder = Path.cwd()
        try:
            geometry = geometry_from_metadata(image.metadata) if image is not None else None
        except (KeyError, TypeError, ValueError):
            geometry = None
        source = Path(geometry.source_path) if geometry and geometry.source_path else None
        if source is not None and source.parent.is_dir():
            folder = source.parent
        return folder / f"{stem}_{method}_bands_a{self._alpha:.2f}.nii.gz"

    def _export_dialog(self) -> None:
        method = self.export_combo.currentData()
        if method is None:
            self._fail("Run the analysis first.")
            return
        default = str(self.default_export_path(method))
        path, _ = QFileDialog.getSaveFileName(
            self, "Export bands as NIfTI", default, "NIfTI (*.nii.gz *.nii)"
        )
        if not path:
            return
        try:
            written = self.export_bands(method, path)
        except Exception as exc:  # refused or failed: say why, keep going
            self._fail(f"Export failed: {_message(exc)}")
            return
        _notify("info", f"Bands written to {written}")

    # ================================================================== plausible samples
    def _plausible_clicked(self) -> None:
        analysis = self.analysis()
        methods = [m for m in (analysis.bands if analysis else {}) if analysis.can_sample(m)]
        if not methods:
            self._fail("Sampling from the set needs CONSIGN (or pixel-wise) bands.")
            return
        chosen = self.export_combo.currentData()
        method = chosen if chosen in methods else methods[0]
        try:
            self.add_plausible_segmentations(method, int(self.n_plausible.value()))
        except Exception as exc:
            self._fail(f"Sampling failed: {_message(exc)}")

    def add_plausible_segmentations(self, method: str = "consign", n: int = 8) -> Any:
        """Add ``n`` segmentations drawn from ``method``'s set at the current alpha, as a Labels
        layer with a leading sample axis (flip through it with the first slider)."""
        image = self.image_layer()
        analysis = self.analysis(image)
        if analysis is None or not analysis.can_sample(method):
            raise ValueError(f"{method_label(method)} offers no sampling of its set here")
        stack = analysis.plausible(method, self._alpha, n)
        if image.ndim == 2:
            stack = stack[:, 0]
        meta = dict(image.metadata)
        meta[KIND_KEY] = "plausible"
        meta["napari_consign"] = {
            "method": method,
            "alpha": analysis.bands[method].snap(self._alpha),
            "n": n,
            "axis 0": "sample index",
        }
        name = samples_layer_name(image.name, method)
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        return self.viewer.add_labels(
            stack,
            name=name,
            affine=stacked_affine(image),
            metadata=meta,
            opacity=0.6,
            colormap={0: "transparent", 1: (0.8, 0.475, 0.655, 1.0), None: "transparent"},
        )

    # ================================================================== teardown
    def closeEvent(self, event: Any) -> None:
        self.cancel()
        if self._prep_job is not None:
            self._prep_job.cancel()
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


def safe_file_stem(name: str) -> str:
    """``name`` as a file name stem: letters, digits, ``-``, ``.`` and ``_`` only."""
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    return stem or "scan"
