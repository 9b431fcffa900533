"""Calibrating methods now, in the widget: sample every unit with the model, then fit."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np

from ..body_mask import body_mask, restrict_scores
from ..conformal.consign_decomposition import DecompositionStack
from ..conformal.dataset import SegmentationSet
from ..conformal.errors import Cancelled, ConformalInputError, is_cancelled
from ..conformal.method import ScanStats
from ..conformal.registry import MethodOptions, method_class
from .events import Progress
from .units import CalibrationCases


def check_cancel(cancel: Any) -> None:
    """Raise :class:`Cancelled` when ``cancel`` (an Event or a callable) is set."""
    if is_cancelled(cancel):
        raise Cancelled("cancelled")


def calibrate_methods(
    sampler: Any,
    cases: CalibrationCases,
    wanted: Sequence[str],
    *,
    seed: int = 0,
    device: str = "cpu",
    epochs: int | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    body_rule: bool = False,
) -> Generator[Progress, None, dict]:
    """Calibrate ``wanted`` methods now: sample every unit with ``sampler``, then fit.

    Yields :class:`Progress`; returns ``{method: calibrated object}``. Methods that need
    training (AT/COAT) train on ``cases.train_*`` (never the calibration units). Samples are
    streamed: each unit is reduced to its MC mean (and, for methods that read the samples'
    top-K decomposition, e.g. CONSIGN, that decomposition) as it is sampled, so the raw samples
    of all units never exist at once. ``body_rule``: scores outside each unit's body mask are
    set to 0, as the analysis does for a scan.
    """
    from ..models import Moments, TopK

    k = max(1, min(5, sampler.n_samples - 1))
    options = MethodOptions(k=k, seed=seed, device=device, epochs=epochs or 60)
    methods = {name: method_class(name)(options) for name in wanted}
    streamed = sorted({c for m in methods.values() if (c := m.sample_components()) is not None})
    for m in methods.values():
        if m.sample_components() is not None:
            m.check_samples(sampler.n_samples)  # fail before sampling, with the reason
    training = [name for name, m in methods.items() if m.needs_training]
    if training and cases.n_train == 0:
        raise ConformalInputError(
            f"{', '.join(n.upper() for n in training)} need training units for their threshold "
            "predictor, separate from the calibration units; give more cases or untick them"
        )
    stacks = [("calibration", cases.images, cases.masks, streamed)]
    if training:
        stacks.append(("training", cases.train_images, cases.train_masks, []))
    total = sum(sum(len(a) for a in imgs) for _, imgs, _, _ in stacks)
    done = 0
    sets: dict[str, SegmentationSet] = {}
    decomps: dict[int, list] = {c: [] for c in streamed}
    for label, imgs, masks, components in stacks:
        means = []
        for stack in imgs:
            topk = {c: TopK(c) for c in components}
            gen = sampler.iter_volume(stack, [Moments(), *topk.values()], cancel=cancel)
            try:
                while True:
                    step = next(gen)
                    yield Progress("sampling", done + step.done, total, f"sampling {label} cases")
            except StopIteration as stop:
                res = stop.value
            done += len(stack)
            means.append(res["mean"])
            for c, reducer in topk.items():
                decomps[c].append(reducer.result()["topk"])
        scores = np.clip(np.concatenate(means), 0.0, 1.0)
        units = np.concatenate(imgs)
        if body_rule:
            scores = restrict_scores(scores, np.stack([body_mask(u) for u in units]))
        sets[label] = SegmentationSet(None, scores, np.concatenate(masks), units)
    cal, train = sets["calibration"], sets.get("training")
    for i, (name, method) in enumerate(methods.items()):
        check_cancel(cancel)
        yield Progress("calibrating", i, len(wanted), f"calibrating {name.upper()}")
        c = method.sample_components()
        stats = ScanStats(
            cal.scores, None, cal.images, None if c is None else join_stacks(decomps[c])
        )
        method.calibrate_stats(stats, cal.masks, train, cancel=cancel)
        method.finish_calibration()
    yield Progress("calibrating", len(wanted), len(wanted), "calibrated")
    return methods


def join_stacks(stacks: list) -> DecompositionStack:
    """One ``DecompositionStack`` of all units of ``stacks`` (the same units, in order)."""
    if len(stacks) == 1:
        return stacks[0]
    first = stacks[0]
    return DecompositionStack(
        np.concatenate([d.mean for d in stacks]),
        np.concatenate([d.components for d in stacks]),
        np.concatenate([d.singular for d in stacks]),
        np.concatenate([d.coefficients for d in stacks]),
        first.n_classes,
        first.binary,
    )
