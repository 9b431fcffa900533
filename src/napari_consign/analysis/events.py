"""The events :func:`~.run.run_analysis` yields, and the result it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


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
