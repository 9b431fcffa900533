"""Inputs of the threshold predictor f_D: the low-resolution tensor it sees, and the check
that a caller's inputs match what a trained f_D expects.

:func:`predictor_inputs` stacks the standardised image channels, the mean probability map and
optionally the MC standard deviation at ``size x size``; :func:`input_channels` says how many
channels that gives; :func:`check_predictor_inputs` raises :class:`ConformalInputError` with a
one-line fix when the image or variance does not match the predictor's configuration.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from .coat_loss import to_score_space
from .errors import ConformalInputError
from .threshold_predictor import PredictorConfig


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
