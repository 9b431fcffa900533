"""Evaluation over random calibration/test splits: the papers' tables, for every method.

Each split is a fresh random partition of the units (or of whole scans) into (optional)
training, calibration and test parts, drawn from one generator seeded with ``seed``, one
permutation per split, in order. Each split is one job (:func:`run_split`); ``map_jobs`` may
run them anywhere (the CLI uses Dask) with identical results. Per split, method and alpha the
test metrics of docs/methods.md §7 are computed; the report gives their mean and standard
deviation over splits. A method whose one calibration serves every alpha
(:attr:`~.method.ConformalMethod.alpha_free`) is calibrated once per split, the others once per
alpha. Methods are listed in :mod:`.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .crc_rule import check_alpha
from .dataset import SegmentationSet
from .errors import ConformalInputError
from .method import ConformalMethod
from .metrics import coverage_gap, marginal_coverage, tpr, unit_metrics
from .registry import METHODS, MethodOptions, make_method

#: ``map_jobs(run_split, jobs, data) -> results in order``; the default runs them here.
JobMapper = Callable[[Callable[[Any, Any], dict], list, Any], list]


@dataclass(frozen=True)
class SplitSizes:
    """Number of units (or scans) in each part of a split."""

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


def split_metrics(method: ConformalMethod, test: SegmentationSet, alpha: float) -> dict[str, float]:
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


@dataclass(frozen=True)
class SplitJob:
    """One random split: the permutation of the units and what to evaluate on it."""

    perm: np.ndarray
    n_train: int
    n_cal: int
    methods: tuple[str, ...]
    alphas: tuple[float, ...]
    primary: float
    options: MethodOptions


def run_split(job: SplitJob, data: SegmentationSet) -> dict:
    """Metrics of every method at every alpha on one split, and per-image TPRs at ``primary``.

    The same numbers whichever process runs it.
    """
    perm, a, b = job.perm, job.n_train, job.n_train + job.n_cal
    train = data.subset(perm[:a]) if a else None
    cal, test = data.subset(perm[a:b]), data.subset(perm[b:])
    metrics: dict[float, dict[str, dict]] = {alpha: {} for alpha in job.alphas}
    tprs: dict[str, list[float]] = {}
    for name in job.methods:
        method = None
        for alpha in job.alphas:
            if method is None or not method.alpha_free:
                method = make_method(name, replace(job.options, alpha=alpha))
                method.calibrate(cal, train)
            metrics[alpha][name] = split_metrics(method, test, alpha)
            if alpha == job.primary:
                pairs = zip(method.predict_masks(test, alpha), test.masks, strict=True)
                values = [tpr(outer, truth) for (_, outer), truth in pairs]
                tprs[name] = [float(v) for v in values if not np.isnan(v)]
    return {"metrics": metrics, "tprs": tprs}


def scan_split(
    rng: np.random.Generator, units_per_scan: np.ndarray, sizes: SplitSizes
) -> tuple[np.ndarray, int, int]:
    """One split of whole scans: the unit permutation and the train and calibration unit
    counts, for ``sizes`` counted in scans (a scan's slices never fall in two parts)."""
    starts = np.concatenate([[0], np.cumsum(units_per_scan)])
    order = rng.permutation(len(units_per_scan))
    perm = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in order])
    counts = units_per_scan[order]
    n_train = int(counts[: sizes.train].sum())
    return perm, n_train, int(counts[sizes.train : sizes.train + sizes.cal].sum())


def check_methods(methods: Sequence[str], options: MethodOptions) -> list[ConformalMethod]:
    """One instance of every named method (checks names and settings before any work)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConformalInputError(
            f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(METHODS)}"
        )
    return [make_method(m, options) for m in methods]


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
    *,
    alphas: Sequence[float] = (),
    units_per_scan: np.ndarray | None = None,
    map_jobs: JobMapper | None = None,
) -> dict:
    """Evaluate ``methods`` over ``splits`` random partitions; a JSON-ready report.

    ``alpha`` is the main level (``methods`` holds its table, ``per_image_tpr`` its per-image
    outer-band TPRs); ``alphas`` adds levels to the ``sweep`` (one table per level).
    ``train_fraction`` is used only when a requested method needs training (AT, COAT);
    otherwise calibration and test share all units. With ``units_per_scan`` (the units of
    ``data`` are consecutive slices of scans with these counts) whole scans are split and the
    fractions count scans. ``progress(done, total)`` is called after each split when the
    splits run here (no ``map_jobs``).
    """
    primary = check_alpha(alpha)
    levels = sorted({check_alpha(a) for a in alphas} | {primary})
    options = replace(options or MethodOptions(), alpha=primary)
    needs_training = any(m.needs_training for m in check_methods(methods, options))
    if splits < 1:
        raise ConformalInputError(f"splits must be at least 1, got {splits}")
    n_items = len(data) if units_per_scan is None else len(units_per_scan)
    sizes = split_sizes(n_items, cal_fraction, train_fraction if needs_training else 0.0)
    rng = np.random.default_rng(seed)
    jobs = []
    for _ in range(splits):
        if units_per_scan is None:
            perm, n_train, n_cal = rng.permutation(len(data)), sizes.train, sizes.cal
        else:
            perm, n_train, n_cal = scan_split(rng, np.asarray(units_per_scan), sizes)
        jobs.append(SplitJob(perm, n_train, n_cal, tuple(methods), tuple(levels), primary, options))
    if map_jobs is None:

        def map_jobs(func, todo, shared):
            out = []
            for i, job in enumerate(todo):
                out.append(func(job, shared))
                if progress is not None:
                    progress(i + 1, len(todo))
            return out

    results = map_jobs(run_split, jobs, data)
    sweep = {
        f"{a:g}": {m: aggregate([r["metrics"][a][m] for r in results]) for m in methods}
        for a in levels
    }
    return {
        "alpha": primary,
        "splits": splits,
        "seed": seed,
        "n_units": len(data),
        "split_by": "unit" if units_per_scan is None else "scan",
        "n_train": sizes.train,
        "n_cal": sizes.cal,
        "n_test": sizes.test,
        "methods": sweep[f"{primary:g}"],
        "alphas": levels,
        "sweep": sweep,
        "per_image_tpr": {m: [t for r in results for t in r["tprs"][m]] for m in methods},
    }


def aggregate(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (ddof 1; 0 for one split) of every metric over splits."""
    out = {}
    for key in rows[0]:
        v = np.asarray([r[key] for r in rows], dtype=np.float64)
        sd = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
        out[key] = {"mean": float(np.mean(v)), "sd": sd}
    return out
