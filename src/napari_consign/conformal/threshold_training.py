"""Training of the threshold predictor f_D (AT and COAT), seeded and reproducible.

:func:`train_predictor` fits a :class:`~.threshold_predictor.ThresholdNet` on units with
non-empty masks: ``"coat"`` minimises the differentiable miscoverage loss (docs/methods.md
§4.2), ``"at"`` regresses AT's oracle thresholds with MSE (docs/methods.md §3). An
alpha-conditioned predictor is trained on alphas drawn from its range. Training reports progress
per epoch, keeps the best weights on a validation split (early stopping), can be cancelled and
returns a :class:`~.threshold_predictor.TrainedPredictor`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
from torch.nn import functional as F

from .coat_loss import coat_loss, to_score_space
from .device import DeviceError, resolve_device
from .errors import Cancelled, ConformalInputError
from .errors import is_cancelled as _is_cancelled
from .oracle import oracle_threshold, sorted_gt_scores
from .threshold_predictor import PredictorConfig, ThresholdNet, TrainedPredictor

ProgressCallback = Callable[[int, int, float, float], None]


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
