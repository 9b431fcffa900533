"""The per-image threshold predictor f_D of AT and COAT: a small CNN, its inputs and training.

f_D sees the image and the Monte-Carlo mean probability map (optionally the per-pixel MC
standard deviation) at a fixed low resolution and outputs one threshold in (0, 1). An
*alpha-conditioned* predictor also takes alpha as an input and is trained over a range of
alphas, so one network serves every position of the slider (beyond the paper). Training is
seeded and reproducible, reports progress per epoch, keeps the best weights on a validation
split (early stopping) and can be cancelled.

Objectives: ``"coat"`` minimises the differentiable miscoverage loss (docs/methods.md §4.2);
``"at"`` regresses AT's oracle thresholds with MSE (docs/methods.md §3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .coat_loss import coat_loss, to_score_space
from .device import DeviceError, resolve_device
from .errors import Cancelled, ConformalInputError
from .errors import is_cancelled as _is_cancelled
from .oracle import oracle_threshold, sorted_gt_scores

ProgressCallback = Callable[[int, int, float, float], None]

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


def predictor_inputs(
    scores: np.ndarray,
    images: np.ndarray | None,
    variances: np.ndarray | None,
    size: int,
    score_space: str = "probability",
) -> torch.Tensor:
    """Stack (standardised image channels, mean probability, [MC std]) at ``size x size``.

    ``scores`` is (n, H, W); ``images`` (n, H, W) or (n, C, H, W) or None; ``variances``
    (n, H, W) or None. Each image channel is standardised per unit. In logit score space the
    probability channel is ``logit(p) / 10`` (clamped), so faint responses stay visible.
    """
    chans = []
    if images is not None:
        img = np.asarray(images, dtype=np.float32)
        img = img[:, None] if img.ndim == 3 else img
        mean = img.mean(axis=(2, 3), keepdims=True)
        std = img.std(axis=(2, 3), keepdims=True) + 1e-6
        chans.append((img - mean) / std)
    p = np.asarray(scores, dtype=np.float32)[:, None]
    if score_space == "logit":
        p = to_score_space(torch.from_numpy(p), "logit").numpy() / 10.0
    chans.append(p)
    if variances is not None:
        chans.append(np.sqrt(np.asarray(variances, dtype=np.float32))[:, None])
    x = torch.from_numpy(np.concatenate(chans, axis=1))
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return x.contiguous()


def image_channels(images: np.ndarray | None) -> int:
    """Image channels of a stack ``(n, H, W)`` (1) or ``(n, C, H, W)`` (C); 0 for None."""
    return 0 if images is None else (1 if np.ndim(images) == 3 else int(np.shape(images)[1]))


def input_channels(images: np.ndarray | None, use_variance: bool) -> int:
    """Number of input channels :func:`predictor_inputs` produces."""
    return image_channels(images) + 1 + int(use_variance)


def check_predictor_inputs(
    config: PredictorConfig,
    images: np.ndarray | None,
    has_variance: bool,
    method: str | None = None,
    stack_shape: tuple[int, ...] | None = None,
) -> None:
    """Raise :class:`ConformalInputError` unless the inputs match what f_D was trained on.

    ``images`` is the stack handed to :func:`predictor_inputs` (``(n, H, W)``,
    ``(n, C, H, W)`` or None), ``has_variance`` whether an MC variance comes with it and
    ``stack_shape`` the ``(n, H, W)`` shape of the score stack, if known.
    """
    who = f"this {method.upper()} threshold predictor" if method else "this threshold predictor"
    want_var = bool(config.use_variance)
    want_img = int(config.in_channels) - 1 - int(want_var)
    got_img = image_channels(images)
    if want_img > 0 and got_img == 0:
        raise ConformalInputError(
            f"{who} was trained with {want_img} image channel(s) besides the probability map, "
            "but no image was given: pass the images (the NPZ 'images' array, or the image "
            "layer), or retrain the predictor on probability maps alone"
        )
    if want_img == 0 and got_img > 0:
        raise ConformalInputError(
            f"{who} was trained on probability maps alone, but an image was given: leave the "
            "image out, or retrain the predictor with images"
        )
    if got_img != want_img:
        raise ConformalInputError(
            f"{who} was trained with {want_img} image channel(s), but the image has "
            f"{got_img}: pass images of the kind it was trained on, or retrain it"
        )
    if want_var and not has_variance:
        raise ConformalInputError(
            f"{who} was trained with the Monte-Carlo standard deviation as an input, but no "
            "variance was given: pass the MC variance (it needs the Monte-Carlo samples), or "
            "retrain without use_variance"
        )
    if has_variance and not want_var:
        raise ConformalInputError(
            f"{who} was trained without the Monte-Carlo variance, but a variance was given: "
            "leave it out, or retrain with use_variance"
        )
    if images is not None and stack_shape is not None:
        img = np.shape(images)
        if img[0] != stack_shape[0] or img[-2:] != tuple(stack_shape[-2:]):
            raise ConformalInputError(
                f"the image has shape {img[1:] if len(img) else img} per unit but the "
                f"probability map {tuple(stack_shape[1:])}: they must match pixel for pixel"
            )


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


def _alpha_batch(config: PredictorConfig, n: int, gen: torch.Generator) -> torch.Tensor:
    if not config.conditioned:
        return torch.full((n,), config.alpha)
    lo, hi = config.alpha_range
    return lo + (hi - lo) * torch.rand(n, generator=gen)


@contextmanager
def _torch_threads(n: int | None):
    """Temporarily set torch's intra-op thread count (``None``: leave it)."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_predictor(
    inputs: torch.Tensor,
    scores: np.ndarray,
    masks: np.ndarray,
    config: PredictorConfig,
    device: str = "cpu",
    progress: ProgressCallback | None = None,
    cancel: Callable[[], bool] | object | None = None,
    threads: int | None = 1,
) -> TrainedPredictor:
    """Train f_D on units with non-empty masks (empty ones are skipped).

    ``device`` is a torch device string or ``"auto"`` (CUDA, then MPS, then CPU; see
    :func:`~napari_consign.conformal.device.resolve_device`); one that does not exist or does
    not work raises :class:`ConformalInputError`. On CPU, training runs on ``threads`` torch
    threads (default 1: this small network trains several times faster on one thread than on
    two contended cores, see the README).

    ``inputs`` come from :func:`predictor_inputs`; ``scores`` and ``masks`` are the
    full-resolution (n, H, W) maps the losses use. Raises :class:`Cancelled` if ``cancel``
    (a callable or an Event) fires, checked at every batch.
    """
    dev = training_device(device)
    with _torch_threads(threads if dev.type == "cpu" else None):
        return _train(inputs, scores, masks, config, dev, progress, cancel)


def training_device(device: str | torch.device | None) -> torch.device:
    """The working torch device for ``device`` ("auto": CUDA, MPS, then CPU)."""
    try:
        return resolve_device(device)
    except DeviceError as exc:
        raise DeviceError(f"threshold predictor device: {exc}") from None


def _train(inputs, scores, masks, config, device, progress, cancel) -> TrainedPredictor:
    keep = np.flatnonzero(np.asarray(masks).reshape(len(masks), -1).any(axis=1))
    if keep.size == 0:
        raise ConformalInputError(
            "the training split has no image with a non-empty mask: the threshold predictor "
            "has nothing to learn from; give it images that contain the structure"
        )
    dev = torch.device(device)
    x = inputs[keep].to(dev)
    probs = torch.as_tensor(np.asarray(scores)[keep], dtype=torch.float32, device=dev)
    truth = torch.as_tensor(np.asarray(masks)[keep] != 0, dtype=torch.float32, device=dev)
    descending = [sorted_gt_scores(s, m) for s, m in zip(scores[keep], masks[keep], strict=True)]

    gen = torch.Generator().manual_seed(config.seed)
    n = keep.size
    order = torch.randperm(n, generator=gen)
    n_val = round(config.val_fraction * n) if n >= 5 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]
    val_alphas = (
        torch.linspace(*config.alpha_range, 5)
        if config.conditioned
        else torch.tensor([config.alpha])
    )

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        net = ThresholdNet(x.shape[1], config.width, config.conditioned).to(dev)
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)

    def loss_of(idx: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        tau = net(x[idx], alpha.to(dev))
        if config.objective == "coat":
            return coat_loss(
                probs[idx], tau, truth[idx], alpha.to(dev), config.temperature, config.score_space
            )
        target = torch.tensor(
            [
                float(oracle_threshold(descending[i], a))
                for i, a in zip(idx.tolist(), alpha.tolist(), strict=True)
            ],
            dtype=torch.float32,
            device=dev,
        )
        space = config.score_space  # regress in the space the thresholds are compared in
        return F.mse_loss(to_score_space(tau, space), to_score_space(target, space))

    best = (math.inf, {k: v.clone() for k, v in net.state_dict().items()})
    history: list[dict[str, float]] = []
    stale = 0
    for epoch in range(1, config.epochs + 1):
        net.train()
        perm = train_idx[torch.randperm(train_idx.numel(), generator=gen)]
        losses = []
        for lo in range(0, perm.numel(), config.batch_size):
            if _is_cancelled(cancel):
                raise Cancelled(f"threshold predictor training cancelled at epoch {epoch}")
            idx = perm[lo : lo + config.batch_size]
            loss = loss_of(idx, _alpha_batch(config, idx.numel(), gen))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        train_loss = float(np.mean(losses)) if losses else math.nan
        val_loss = train_loss
        if n_val:
            net.eval()
            with torch.no_grad():
                val_loss = float(
                    np.mean(
                        [
                            float(loss_of(val_idx, torch.full((n_val,), float(a))))
                            for a in val_alphas
                        ]
                    )
                )
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        if progress is not None:
            progress(epoch, config.epochs, train_loss, val_loss)
        if val_loss < best[0] - 1e-7:
            best, stale = (val_loss, {k: v.clone() for k, v in net.state_dict().items()}), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    net.load_state_dict(best[1])
    return TrainedPredictor(net.cpu().eval(), config, history)
