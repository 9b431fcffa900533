"""``napari-consign evaluate``: methods over random calibration/test splits of an NPZ.

The splits are drawn exactly as :func:`napari_consign.conformal.evaluation.evaluate` draws them
(one generator seeded with ``--seed``, one permutation per split, in order), so a single-alpha
run gives that function's numbers. Each split is one job (:func:`run_split`), run serially or on
Dask (``--workers``/``--scheduler``) with identical results. ``--alphas`` sweeps several levels:
methods whose calibration does not depend on alpha (CRC; AT/COAT with the alpha-conditioned
predictor) are calibrated once per split and read at every alpha, the others once per alpha.
``--markdown`` and ``--plots`` write the papers' tables and figures (:mod:`.report`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..conformal.crc_rule import check_alpha
from ..conformal.dataset import SegmentationSet
from ..conformal.evaluation import aggregate, split_metrics, split_sizes
from ..conformal.metrics import tpr
from ..conformal.registry import METHODS, MethodOptions, make_method
from ..io.safe_write import MARKDOWN_MARKER, REPORT_KEY, check_target, write_text
from ..npz_contract import load_segmentation_set
from .errors import CLIError
from .options import (
    add_method_arguments,
    add_scale_out_arguments,
    map_scaled,
    method_options,
    nonnegative_int,
    parse_alphas,
    parse_methods,
    positive_int,
)
from .report import PLOTS, format_table, markdown, plots
from .scans import add_sampling_arguments, sample_folders


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate conformal methods over random calibration/test splits",
        description="Evaluate conformal methods on an NPZ of Monte-Carlo samples and masks "
        "(see the README's NPZ contract) or on a folder of labelled scans (sampled with the "
        "model; splits then keep each scan in one part); prints a table and optionally writes "
        "JSON, Markdown and plots.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", type=Path, help="NPZ file (samples, masks)")
    src.add_argument("--cases", type=Path, help="folder of image + mask scans (pairing rule)")
    p.add_argument("--methods", default="crc", help=f"comma-separated: {', '.join(METHODS)}")
    p.add_argument(
        "--alpha",
        type=float,
        default=0.1,
        help="error level of the main table and the per-image plot (default 0.1)",
    )
    p.add_argument("--alphas", help="sweep of error levels, e.g. 0.05,0.1,0.2")
    p.add_argument("--splits", type=positive_int, default=20, help="random splits (default 20)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the splits (default 0)")
    p.add_argument(
        "--cal-fraction",
        type=float,
        default=0.5,
        help="fraction of units used for calibration (default 0.5)",
    )
    p.add_argument(
        "--train-fraction",
        type=float,
        default=0.25,
        help="fraction used to train threshold predictors, for methods that need "
        "one (default 0.25)",
    )
    add_method_arguments(p)
    add_sampling_arguments(p)
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    p.add_argument("--markdown", type=Path, default=None, help="write Markdown tables here")
    p.add_argument("--plots", type=Path, default=None, help="write PNG plots in this folder")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace this program's earlier reports/plots at --json, --markdown, --plots "
        "(never an input, scan or bundle)",
    )
    add_scale_out_arguments(p)
    p.set_defaults(run=run)


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


def _alpha_free(name: str, options: MethodOptions) -> bool:
    """Whether one calibration of ``name`` serves every alpha (no per-alpha fitting)."""
    return name == "crc" or (name in ("at", "coat") and options.conditioned)


def run_split(job: SplitJob, data: SegmentationSet) -> dict:
    """Metrics of every method at every alpha on one split, and per-image TPRs at ``primary``.

    A Dask job; the same numbers whichever process runs it.
    """
    perm, a, b = job.perm, job.n_train, job.n_train + job.n_cal
    train = data.subset(perm[:a]) if a else None
    cal, test = data.subset(perm[a:b]), data.subset(perm[b:])
    metrics: dict[float, dict[str, dict]] = {alpha: {} for alpha in job.alphas}
    tprs: dict[str, list[float]] = {}
    for name in job.methods:
        method = None
        for alpha in job.alphas:
            if method is None or not _alpha_free(name, job.options):
                method = make_method(name, replace(job.options, alpha=alpha))
                method.calibrate(cal, train)
            metrics[alpha][name] = split_metrics(method, test, alpha)
            if alpha == job.primary:
                pairs = zip(method.predict_masks(test, alpha), test.masks, strict=True)
                values = [tpr(outer, truth) for (_, outer), truth in pairs]
                tprs[name] = [float(v) for v in values if not np.isnan(v)]
    return {"metrics": metrics, "tprs": tprs}


def _scan_split(
    rng: np.random.Generator, units_per_scan: np.ndarray, sizes
) -> tuple[np.ndarray, int, int]:
    """One split of whole scans: the unit permutation and the train and calibration unit
    counts, for ``sizes`` counted in scans (a scan's slices never fall in two parts)."""
    starts = np.concatenate([[0], np.cumsum(units_per_scan)])
    order = rng.permutation(len(units_per_scan))
    perm = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in order])
    counts = units_per_scan[order]
    n_train = int(counts[: sizes.train].sum())
    return perm, n_train, int(counts[sizes.train : sizes.train + sizes.cal].sum())


def _load(args: argparse.Namespace, methods: list[str], options: MethodOptions):
    """``(data, units per scan or None, source)`` from ``--samples`` or ``--cases``."""
    if args.samples is not None:
        return load_segmentation_set(args.samples), None, str(args.samples)
    from ..cases import stack_sets

    keep = bool({"consign", "pixelwise"} & set(methods)) or options.use_variance
    (sets,), _ = sample_folders(args, [args.cases], keep, options.device)
    return stack_sets(sets), np.array([len(s) for s in sets]), str(args.cases)


def run(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods)
    alphas = [check_alpha(a) for a in (parse_alphas(args.alphas) if args.alphas else [])]
    primary = check_alpha(args.alpha)
    alphas = sorted(set(alphas) | {primary})
    _check_outputs(args)
    options = replace(method_options(args), alpha=primary)
    needs_training = any(make_method(m, options).needs_training for m in methods)
    data, units_per_scan, source = _load(args, methods, options)
    n_items = len(data) if units_per_scan is None else len(units_per_scan)
    sizes = split_sizes(n_items, args.cal_fraction, args.train_fraction if needs_training else 0.0)
    rng = np.random.default_rng(args.seed)  # as conformal.evaluation.evaluate draws splits
    jobs = []
    for _ in range(args.splits):
        if units_per_scan is None:
            perm, n_train, n_cal = rng.permutation(len(data)), sizes.train, sizes.cal
        else:
            perm, n_train, n_cal = _scan_split(rng, units_per_scan, sizes)
        jobs.append(SplitJob(perm, n_train, n_cal, tuple(methods), tuple(alphas), primary, options))
    results = map_scaled(run_split, jobs, args, "splits", shared=data)
    sweep = {
        f"{alpha:g}": {m: aggregate([r["metrics"][alpha][m] for r in results]) for m in methods}
        for alpha in alphas
    }
    report = {
        REPORT_KEY: "napari-consign evaluate",
        "alpha": primary,
        "splits": args.splits,
        "seed": args.seed,
        "n_units": len(data),
        "split_by": "unit" if units_per_scan is None else "scan",
        "n_train": sizes.train,
        "n_cal": sizes.cal,
        "n_test": sizes.test,
        "methods": sweep[f"{primary:g}"],
        "alphas": alphas,
        "sweep": sweep,
        "per_image_tpr": {m: [t for r in results for t in r["tprs"][m]] for m in methods},
        "samples_file": source,
    }
    print(format_table(report))
    if args.json is not None:
        write_text(args.json, json.dumps(report, indent=2), replace=args.overwrite)
        print(f"report written to {args.json}", file=sys.stderr)
    if args.markdown is not None or args.plots is not None:
        written = plots(report, args.plots, args.overwrite) if args.plots is not None else []
        for path in written:
            print(f"plot written to {path}", file=sys.stderr)
        if args.markdown is not None:
            text = f"{MARKDOWN_MARKER}\n" + markdown(report, written, args.markdown.parent)
            write_text(args.markdown, text, replace=args.overwrite)
            print(f"tables written to {args.markdown}", file=sys.stderr)
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, an output that would replace an input or a user's file."""
    inputs = [args.samples] if args.samples is not None else []
    for target in (args.json, args.markdown):
        if target is not None:
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CLIError(f"cannot create {target.parent}: {exc.strerror}") from None
            check_target(target, "report", inputs=inputs, overwrite=args.overwrite)
    if args.plots is not None:
        if args.plots.exists() and not args.plots.is_dir():
            raise CLIError(f"--plots {args.plots} is a file; give a folder")
        if args.plots.is_dir():
            for name in PLOTS:
                check_target(args.plots / name, "plot", inputs=inputs, overwrite=args.overwrite)
