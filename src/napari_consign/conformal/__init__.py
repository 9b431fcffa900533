"""Conformal core: pure numerics (no Qt, napari or file I/O).

Every method is a :class:`ConformalMethod`: it calibrates on units with ground truth and turns
a scan's :class:`ScanStats` into :class:`Bands`. :mod:`.registry` lists them by name.
"""

from .bands import DEFAULT_ALPHAS, Bands, feasible_alphas
from .crc import CRC, Thresholds
from .crc_rule import StepRiskCurve, min_calibration_size, min_feasible_alpha, risk_bound
from .dataset import SegmentationSet
from .errors import ConformalInputError, InfeasibleAlphaError
from .evaluation import evaluate
from .method import ConformalMethod, ScanStats
from .registry import METHODS, MethodOptions, make_method, method_class, register

__all__ = [
    "CRC",
    "DEFAULT_ALPHAS",
    "METHODS",
    "Bands",
    "ConformalInputError",
    "ConformalMethod",
    "InfeasibleAlphaError",
    "MethodOptions",
    "ScanStats",
    "SegmentationSet",
    "StepRiskCurve",
    "Thresholds",
    "evaluate",
    "feasible_alphas",
    "make_method",
    "method_class",
    "min_calibration_size",
    "min_feasible_alpha",
    "register",
    "risk_bound",
]
