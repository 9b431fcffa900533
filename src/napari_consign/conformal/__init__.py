"""Conformal core: pure numerics (no Qt, napari or file I/O).

Every method calibrates on units with ground truth and returns :class:`Bands` for a new scan.
"""

from .bands import DEFAULT_ALPHAS, Bands, feasible_alphas
from .crc import CRC, Thresholds
from .crc_rule import StepRiskCurve, min_calibration_size, min_feasible_alpha, risk_bound
from .dataset import SegmentationSet
from .errors import ConformalInputError, InfeasibleAlphaError
from .evaluation import evaluate
from .registry import METHODS, MethodOptions, make_method

__all__ = [
    "CRC",
    "DEFAULT_ALPHAS",
    "METHODS",
    "Bands",
    "ConformalInputError",
    "InfeasibleAlphaError",
    "MethodOptions",
    "SegmentationSet",
    "StepRiskCurve",
    "Thresholds",
    "evaluate",
    "feasible_alphas",
    "make_method",
    "min_calibration_size",
    "min_feasible_alpha",
    "risk_bound",
]
