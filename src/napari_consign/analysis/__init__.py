"""The widget's plain-Python side: models, calibrations, and the analysis generator.

Nothing here imports Qt or napari, so all of it is testable without a display. The dock widget
runs :func:`run_analysis` in a worker thread (``ui/_workers``) and feeds each event it yields to
:meth:`ImageAnalysis.apply` on the GUI thread:

1. load the model(s) and build a :class:`~napari_consign.models.Sampler`
   (:mod:`.session`, one cache per process);
2. get calibrated methods (:mod:`.bundles`): from calibration bundles (the shipped ones in
   ``sample_data/bundles/<method>.npz`` or files the user picked; a bundle made for another
   model is refused) or by calibrating now on cases with ground truth (:mod:`.units`,
   :mod:`.calibrate_now`);
3. sample the scan slice by slice, **the slice on screen first**: as soon as it is done, every
   method's bands for that slice are yielded (:class:`SlicePreview`), so the user sees bands at
   once while the rest of the volume is sampled. Each slice's samples are reduced at once to
   what the methods read (mean and variance; the top-K decomposition for a method that reads
   the samples, e.g. CONSIGN) and dropped, so memory grows with the volume, not with
   N_s x volume;
4. build each method's :class:`~napari_consign.conformal.Bands` for the whole volume
   (:class:`MethodBands`, through the one method interface
   :meth:`~napari_consign.conformal.ConformalMethod.bands`); a method that fails says why
   (:class:`MethodFailed`) and the others go on.

All alpha-dependent work happens in ``Bands``; the slider only reads them.
"""

from __future__ import annotations

from ..conformal.registry import NAMES as METHOD_NAMES
from .bundles import (
    CalibrationSpec,
    bundle_method,
    bundled_bundle_dir,
    bundled_bundle_path,
    bundled_methods,
    load_calibrated,
    save_bundles,
)
from .calibrate_now import calibrate_methods
from .events import (
    AnalysisResult,
    MethodBands,
    MethodFailed,
    MethodsReady,
    Progress,
    ScanChecked,
    SlicePreview,
)
from .run import run_analysis, run_to_completion
from .session import ModelSpec, build_sampler, cached_sampler
from .state import ImageAnalysis
from .units import CalibrationCases, read_cases

__all__ = [
    "METHOD_NAMES",
    "AnalysisResult",
    "CalibrationCases",
    "CalibrationSpec",
    "ImageAnalysis",
    "MethodBands",
    "MethodFailed",
    "MethodsReady",
    "ModelSpec",
    "Progress",
    "ScanChecked",
    "SlicePreview",
    "build_sampler",
    "bundle_method",
    "bundled_bundle_dir",
    "bundled_bundle_path",
    "bundled_methods",
    "cached_sampler",
    "calibrate_methods",
    "load_calibrated",
    "read_cases",
    "run_analysis",
    "run_to_completion",
    "save_bundles",
]
