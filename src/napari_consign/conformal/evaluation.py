"""Evaluation over random calibration/test splits: the papers' tables, for every method.

Each split is a fresh random partition of the units into (optional) training, calibration and
test parts. Per split and method the test metrics of docs/methods.md §7 are computed; the
report gives their mean and standard deviation over splits. Methods are listed in :mod:`.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .crc_rule import check_alpha
from .dataset import SegmentationSet
from .errors import ConformalInputError
from .metrics import coverage_gap, marginal_coverage, unit_metrics
from .registry import METHODS, EvaluableMethod, MethodOptions, make_method


@dataclass(frozen=True)
class SplitSizes:
    """Number of units in each part of a split."""

    train: int
    cal: int
    test: int


def split_sizes(n: int, cal_fraction: float, train_fraction: float) -> SplitSizes:
    """Part sizes for ``n`` units; the test part gets what is left."""
    for name, f in (("cal_fraction", cal_fraction), ("train_fraction", train_fraction)):
        if not 0.0 <= f < 1.0:
            raise ConformalInputError(f"{name} must lie in [0, 1), got {f}")
    n_train = round(train_fraction * n)
    n_cal = round(cal_fraction * n)
    sizes = SplitSizes(n_train, n_cal, n - n_train - n_cal)
    if sizes.cal < 1 or sizes.test < 1 or (train_fraction > 0 and sizes.train < 1):
        raise ConformalInputError(
            f"{n} units cannot be split into train/cal/test = {sizes.train}/{sizes.cal}/"
            f"{sizes.test}: every part needs at least one unit; adjust the fractions"
        )
    return sizes


def split_metrics(method: EvaluableMethod, test: SegmentationSet, alpha: float) -> dict[str, float]:
    """Test metrics of a calibrated method at ``alpha``: coverage, gap, FNR, inner loss, band
    sizes, empty-mask counts, its calibrated quantities and any method-specific metrics."""
    rows = [
        unit_metrics(inner, outer, truth)
        for (inner, outer), truth in zip(method.predict_masks(test, alpha), test.masks, strict=True)
    ]
    tprs = [r["tpr"] for r in rows]
    used = [r for r in rows if not np.isnan(r["tpr"])]
    out = {
        "marginal_coverage": marginal_coverage(tprs),
        "coverage_gap": coverage_gap(tprs, alpha),
        "mean_fnr": float(np.mean([r["fnr"] for r in used])) if used else float("nan"),
        "inner_loss": float(np.mean([r["inner_loss"] for r in used])) if used else float("nan"),
        "outer_area": float(np.mean([r["outer_voxels"] for r in rows])),
        "inner_area": float(np.mean([r["inner_voxels"] for r in rows])),
        "n_test_used": len(used),
        "n_test_empty": len(rows) - len(used),
        "n_cal_used": method.n_used,
        "n_cal_empty": method.n_empty,
    }
    out.update(method.summary(alpha))
    extra = getattr(method, "test_metrics", None)  # method-specific metrics (e.g. CONSIGN)
    if extra is not None:
        out.update(extra(test, alpha))
    return out


def evaluate(
    data: SegmentationSet,
    methods: Sequence[str],
    alpha: float,
    splits: int = 20,
    seed: int = 0,
    cal_fraction: float = 0.5,
    train_fraction: float = 0.25,
    options: MethodOptions | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Evaluate ``methods`` over ``splits`` random partitions; JSON-ready report.

    ``train_fraction`` is used only when a requested method needs a training part (AT, COAT);
    otherwise calibration and test share all units.
    """
    alpha = check_alpha(alpha)
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConformalInputError(
            f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(METHODS)}"
        )
    if splits < 1:
        raise ConformalInputError(f"splits must be at least 1, got {splits}")
    options = replace(options or MethodOptions(), alpha=alpha)
    needs_training = any(make_method(m, options).needs_training for m in methods)
    sizes = split_sizes(len(data), cal_fraction, train_fraction if needs_training else 0.0)
    rng = np.random.default_rng(seed)
    per_method: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
    for s in range(splits):
        perm = rng.permutation(len(data))
        train = data.subset(perm[: sizes.train]) if sizes.train else None
        cal = data.subset(perm[sizes.train : sizes.train + sizes.cal])
        test = data.subset(perm[sizes.train + sizes.cal :])
        for name in methods:
            method = make_method(name, options)
            method.calibrate(cal, train)
            per_method[name].append(split_metrics(method, test, alpha))
        if progress is not None:
            progress(s + 1, splits)
    return {
        "alpha": alpha,
        "splits": splits,
        "seed": seed,
        "n_units": len(data),
        "n_train": sizes.train,
        "n_cal": sizes.cal,
        "n_test": sizes.test,
        "methods": {m: aggregate(rows) for m, rows in per_method.items()},
    }


def aggregate(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (ddof 1; 0 for one split) of every metric over splits."""
    out = {}
    for key in rows[0]:
        v = np.asarray([r[key] for r in rows], dtype=np.float64)
        sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
        out[key] = {"mean": float(np.mean(v)), "sd": sd}
    return out
