"""Model -> samples -> calibrated methods: the steps the CLI, the scripts and the widget share.

Heavy packages (torch) are imported inside the functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .conformal.dataset import SegmentationSet
from .conformal.registry import MethodOptions, make_method


def sample_cases(
    sampler,
    images: np.ndarray,
    masks: np.ndarray,
    progress: Callable[[int, int], None] | None = None,
    cancel=None,
) -> SegmentationSet:
    """Monte-Carlo samples of a stack of independent 2D cases, as a :class:`SegmentationSet`.

    ``sampler`` is a :class:`napari_consign.models.Sampler`; samples are kept as float16.
    """
    from .models import KeepSamples

    def relay(step) -> None:
        if progress is not None:
            progress(step.done, step.total)

    result = sampler.run(images, [KeepSamples()], cancel=cancel, progress=relay)
    return SegmentationSet.from_samples(result["samples"], masks, images)


def fit_methods(
    names: Sequence[str],
    cal: SegmentationSet,
    train: SegmentationSet | None,
    options: MethodOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Calibrate every named method on ``cal`` (training predictors on ``train``, for the
    methods that need training)."""
    fitted = {}
    for name in names:
        if progress is not None:
            progress(name)
        method = make_method(name, options or MethodOptions())
        method.calibrate(cal, train)
        fitted[name] = method
    return fitted


def save_npz_contract(path: str | Path, data: SegmentationSet, **extra: np.ndarray) -> Path:
    """Write ``data`` in the NPZ contract (samples, masks, images) plus extra arrays."""
    arrays = {"samples": data.samples, "masks": data.masks, **extra}
    if data.images is not None:
        arrays["images"] = data.images
    np.savez_compressed(path, **arrays)
    return Path(path)
