"""The methods :func:`~.evaluation.evaluate` and the CLI know, and what they must offer.

Methods are listed by import path and imported only when used, so adding one touches one line.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .dataset import SegmentationSet
from .errors import ConformalInputError


@dataclass(frozen=True)
class MethodOptions:
    """Settings shared by every method; each method reads the ones it needs."""

    beta: float = 0.9  # CONSIGN / pixel-wise: accuracy level of beta-equality
    k: int = 5  # CONSIGN: principal components kept
    seed: int = 0  # training, multi-start optimisation and sampling
    device: str = "cpu"  # torch device for methods that train or optimise ("auto": best here)
    alpha: float = 0.1  # the error level evaluated (per-alpha predictors train for it)
    conditioned: bool = True  # AT/COAT: one alpha-conditioned predictor, else per-alpha
    use_variance: bool = False  # AT/COAT: feed the MC standard deviation to the predictor
    epochs: int = 60  # AT/COAT: training epochs (early stopping may end sooner)
    score_space: str = "probability"  # AT/COAT: space of the training loss (paper); or "logit"
    temperature: float | None = None  # COAT's T; None: 0.05 (probability) or 0.5 (logit space)
    input_size: int = 64  # AT/COAT: side of the predictor's input image


class EvaluableMethod(Protocol):
    """What evaluation needs from a method: calibrate, predict masks at alpha, report."""

    name: str
    needs_training: bool
    n_used: int
    n_empty: int

    def calibrate(self, cal: SegmentationSet, train: SegmentationSet | None) -> None:
        """Fit on the calibration part (and the training part, for learned predictors)."""

    def predict_masks(
        self, data: SegmentationSet, alpha: float
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(inner, outer)`` boolean masks of every unit of ``data`` at ``alpha``."""

    def summary(self, alpha: float) -> dict[str, float]:
        """Calibrated quantities at ``alpha`` (thresholds, lambda, ...) for reports."""


#: Method name -> "module:class" (relative to this package); the class takes MethodOptions.
METHODS: dict[str, str] = {
    "crc": ".crc:CRC",
    "at": ".adaptive:AT",
    "coat": ".adaptive:COAT",
    "consign": ".consign:CONSIGN",
    "pixelwise": ".pixelwise:PixelwiseAPS",
}


def method_class(name: str) -> type:
    """The class implementing the method called ``name`` (imported on first use)."""
    if name not in METHODS:
        raise ConformalInputError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    module, _, cls = METHODS[name].partition(":")
    return getattr(importlib.import_module(module, __package__), cls)


def make_method(name: str, options: MethodOptions | None = None) -> EvaluableMethod:
    """Instantiate the method called ``name``."""
    return method_class(name)(options or MethodOptions())
