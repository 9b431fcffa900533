"""MethodOptions: the settings shared by every method; each method reads the ones it needs."""

from __future__ import annotations

from dataclasses import dataclass


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
