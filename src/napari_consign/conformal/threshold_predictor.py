"""The per-image threshold predictor f_D of AT and COAT: its configuration and network.

f_D sees the image and the Monte-Carlo mean probability map (optionally the per-pixel MC
standard deviation) at a fixed low resolution and outputs one threshold in (0, 1). An
*alpha-conditioned* predictor also takes alpha as an input and is trained over a range of
alphas, so one network serves every position of the slider (beyond the paper).

:class:`PredictorConfig` defines a predictor and its training (stored in bundles),
:class:`ThresholdNet` is the network and :class:`TrainedPredictor` a trained one, which
predicts thresholds and round-trips through plain numpy weight arrays. Its inputs are built by
:mod:`.threshold_inputs`; it is trained by :mod:`.threshold_training`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from .errors import ConformalInputError

#: Default COAT temperature T per score space: 0.05 on probabilities (the paper's form,
#: docs/methods.md §4.2) and 0.5 on logits (the project's logit-space option; a logit has slope 4 at
#: p = 0.5, so this is about T = 0.125 there and much sharper near 0 and 1).
TEMPERATURES = {"probability": 0.05, "logit": 0.5}


@dataclass(frozen=True)
class PredictorConfig:
    """Everything that defines a threshold predictor and its training (stored in bundles)."""

    objective: str = "coat"
    conditioned: bool = True
    alpha: float = 0.1  # training alpha of a per-alpha predictor
    alpha_range: tuple[float, float] = (0.05, 0.5)  # of a conditioned predictor
    temperature: float | None = None  # None: the default of the score space (TEMPERATURES)
    score_space: str = "probability"  # the paper's loss; "logit" is an option, see coat_loss
    use_variance: bool = False
    in_channels: int = 2
    input_size: int = 64
    width: int = 16
    epochs: int = 60
    batch_size: int = 16
    lr: float = 5e-4
    val_fraction: float = 0.2
    patience: int = 15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.objective not in ("coat", "at"):
            raise ConformalInputError(f"objective must be 'coat' or 'at', got {self.objective!r}")
        lo, hi = self.alpha_range
        if not 0 < lo < hi < 1 or not 0 < self.alpha < 1:
            raise ConformalInputError("training alphas must lie in (0, 1), with low < high")
        if self.score_space not in TEMPERATURES:
            raise ConformalInputError(
                f"score_space must be 'probability' or 'logit', got {self.score_space!r}"
            )
        if self.temperature is None:
            object.__setattr__(self, "temperature", TEMPERATURES[self.score_space])
        try:
            t = float(self.temperature)
        except (TypeError, ValueError):
            t = math.nan
        if not t > 0 or math.isinf(t):
            raise ConformalInputError(
                f"the COAT temperature must be a positive number, got {self.temperature!r}"
            )
        object.__setattr__(self, "temperature", t)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PredictorConfig:
        d = dict(d)
        d["alpha_range"] = tuple(d["alpha_range"])
        return cls(**d)


class ThresholdNet(nn.Module):
    """Three conv stages, global average+max pooling, an MLP head, a sigmoid output."""

    def __init__(self, in_channels: int, width: int = 16, conditioned: bool = True) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1),
                nn.GroupNorm(4, chans[i + 1]),
                nn.ReLU(inplace=True),
            ]
            if i < 2:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.conditioned = conditioned
        self.head = nn.Sequential(
            nn.Linear(2 * chans[-1] + (2 if conditioned else 0), 32),
            nn.ReLU(inplace=True),
            nn.Linear(32, 1),
        )

    def forward(self, x: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        f = self.features(x)
        pooled = [f.mean(dim=(2, 3)), f.amax(dim=(2, 3))]
        if self.conditioned:
            if alpha is None:
                raise ValueError("an alpha-conditioned predictor needs alpha")
            a = alpha.reshape(-1, 1).to(f.dtype)
            pooled += [a, torch.log(a)]
        return torch.sigmoid(self.head(torch.cat(pooled, dim=1))).squeeze(1)


@dataclass
class TrainedPredictor:
    """A trained f_D with its configuration and training history."""

    net: ThresholdNet
    config: PredictorConfig
    history: list[dict[str, float]] = field(default_factory=list)

    def check_alpha(self, alpha: float | np.ndarray) -> None:
        """Raise if a conditioned predictor is asked for an alpha outside its trained range."""
        if not self.config.conditioned:
            return
        lo, hi = self.config.alpha_range
        a = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
        if np.any(a < lo - 1e-9) or np.any(a > hi + 1e-9):
            raise ConformalInputError(
                f"alpha {a.min():g}..{a.max():g} is outside the range [{lo:g}, {hi:g}] this "
                "threshold predictor was trained for; retrain it with a wider alpha range or "
                "use a per-alpha predictor"
            )

    @torch.inference_mode()
    def predict(self, inputs: torch.Tensor, alpha: float) -> np.ndarray:
        """Predicted thresholds (float32 values, returned as float64) of every input unit."""
        self.check_alpha(alpha)
        self.net.eval()
        a = torch.full((inputs.shape[0],), float(alpha)) if self.config.conditioned else None
        tau = self.net(inputs, a)
        return tau.to(torch.float32).numpy().astype(np.float64)

    @torch.inference_mode()
    def predict_grid(self, inputs: torch.Tensor, alphas: np.ndarray) -> np.ndarray:
        """Thresholds for every alpha of a grid, shape ``(len(alphas), n)``, in one pass."""
        alphas = np.asarray(alphas, dtype=np.float64)
        self.check_alpha(alphas)
        self.net.eval()
        n = inputs.shape[0]
        if not self.config.conditioned:  # tau_hat does not depend on alpha
            tau = self.net(inputs).to(torch.float32).numpy().astype(np.float64)
            return np.broadcast_to(tau, (alphas.size, n)).copy()
        a = torch.from_numpy(np.repeat(alphas, n).astype(np.float32))
        tau = self.net(inputs.repeat(alphas.size, 1, 1, 1), a)
        return tau.to(torch.float32).numpy().astype(np.float64).reshape(alphas.size, n)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Weights as plain numpy arrays (a safe, pickle-free form for bundles)."""
        return {k: v.detach().cpu().numpy() for k, v in self.net.state_dict().items()}

    @classmethod
    def from_state_arrays(
        cls, config: PredictorConfig, arrays: dict[str, np.ndarray]
    ) -> TrainedPredictor:
        net = ThresholdNet(config.in_channels, config.width, config.conditioned)
        try:
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
        except RuntimeError as exc:
            raise ConformalInputError(
                f"threshold predictor weights do not match their configuration: {exc}"
            ) from None
        return cls(net.eval(), config)
