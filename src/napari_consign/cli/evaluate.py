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
from ..conformal.evaluation import split_metrics, aggregate, split_sizes
from ..conformal.metrics import tpr
from ..conformal.registry import METHODS, MethodOptions, make_method
from ..npz_contract import load_segmentation_set
from .errors import CLIError
from .options import (
    add_method_arguments,
    add_scale_out_arguments,
    map_scaled,
    method_options,
    parse_alphas,
    parse_methods,
)

#: Metrics shown in the printed table: key, column title, number format.
TABLE_COLUMNS = (
    ("marginal_coverage", "coverage", ".4f"),
    ("coverage_gap", "gap", ".4f"),
    ("mean_fnr", "FNR", ".4f"),
    ("inner_loss", "inner loss", ".4f"),
    ("outer_area", "outer px", ".1f"),
    ("inner_area", "inner px", ".1f"),
)
#: Set metrics of CONSIGN and the pixel-wise baseline, shown when a method reports them.
SET_COLUMNS = (
    ("set_coverage", "set coverage", ".4f"),
    ("sEC_100", "sEC (100)", ".4f"),
    ("chao1_100", "Chao1 (100)", ".1f"),
    ("corr_100", "corr (100)", ".3f"),
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate conformal methods over random calibration/test splits",
        description="Evaluate conformal methods on an NPZ of Monte-Carlo samples and masks "
        "(see the README's NPZ contract); prints a table and optionally writes JSON.",
    )
    p.add_argument("--samples", required=True, type=Path, help="NPZ file (samples, masks)")
    p.add_argument("--methods", default="crc", help=f"comma-separated: {', '.join(METHODS)}")
    p.add_argument(
        "--alpha",
        type=float,
        default=0.1,
        help="error level of the main table and the per-image plot (default 0.1)",
    )
    p.add_argument("--alphas", help="sweep of error levels, e.g. 0.05,0.1,0.2")
    p.add_argument("--splits", type=int, default=20, help="random splits (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits (default 0)")
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
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    p.add_argument("--markdown", type=Path, default=None, help="write Markdown tables here")
    p.add_argument("--plots", type=Path, default=None, help="write PNG plots in this folder")
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


def format_table(report: dict) -> str:
    """A readable table: mean (SD) over splits for every method."""
    head = f"{'method':<10}" + "".join(f"{title:>20}" for _, title, _ in TABLE_COLUMNS)
    lines = [
        f"alpha = {report['alpha']:g}, {report['splits']} splits (seed {report['seed']}), "
        f"n = {report['n_units']}: train {report['n_train']} / cal {report['n_cal']} / "
        f"test {report['n_test']}",
        head,
        "-" * len(head),
    ]
    for name, metrics in report["methods"].items():
        cells = "".join(
            f"{metrics[key]['mean']:{fmt}} ({metrics[key]['sd']:{fmt}})".rjust(20)
            for key, _, fmt in TABLE_COLUMNS
        )
        lines.append(f"{name:<10}{cells}")
        extra = [c for c in SET_COLUMNS if c[0] in metrics]
        if extra:
            lines.append(
                f"{'':<10}"
                + "".join(
                    f"{title}: {metrics[key]['mean']:{fmt}} ({metrics[key]['sd']:{fmt}})  "
                    for key, title, fmt in extra
                ).rstrip()
            )
        cal_empty, test_empty = metrics["n_cal_empty"]["mean"], metrics["n_test_empty"]["mean"]
        if cal_empty + test_empty:
            lines.append(
                f"{'':<10}excluded empty masks per split: cal {cal_empty:.1f}, "
                f"test {test_empty:.1f}"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods)
    alphas = [check_alpha(a) for a in (parse_alphas(args.alphas) if args.alphas else [])]
    primary = check_alpha(args.alpha)
    alphas = sorted(set(alphas) | {primary})
    inputs = {args.samples.resolve()}
    for target in (args.json, args.markdown):
        if target is not None and target.resolve() in inputs:
            raise CLIError(f"{target} would overwrite the input samples file; choose another path")
    if args.splits < 1:
        raise CLIError(f"--splits must be at least 1, got {args.splits}")
    data = load_segmentation_set(args.samples)
    options = replace(method_options(args), alpha=primary)
    needs_training = any(make_method(m, options).needs_training for m in methods)
    sizes = split_sizes(
        len(data), args.cal_fraction, args.train_fraction if needs_training else 0.0
    )
    rng = np.random.default_rng(args.seed)  # as conformal.evaluation.evaluate draws splits
    jobs = [
        SplitJob(
            rng.permutation(len(data)),
            sizes.train,
            sizes.cal,
            tuple(methods),
            tuple(alphas),
            primary,
            options,
        )
        for _ in range(args.splits)
    ]
    results = map_scaled(run_split, jobs, args, "splits", shared=data)
    sweep = {
        f"{alpha:g}": {m: aggregate([r["metrics"][alpha][m] for r in results]) for m in methods}
        for alpha in alphas
    }
    report = {
        "alpha": primary,
        "splits": args.splits,
        "seed": args.seed,
        "n_units": len(data),
        "n_train": sizes.train,
        "n_cal": sizes.cal,
        "n_test": sizes.test,
        "methods": sweep[f"{primary:g}"],
        "alphas": alphas,
        "sweep": sweep,
        "per_image_tpr": {m: [t for r in results for t in r["tprs"][m]] for m in methods},
        "samples_file": str(args.samples),
    }
    print(format_table(report))
    if args.json is not None:
        _write(args.json, json.dumps(report, indent=2))
        print(f"report written to {args.json}", file=sys.stderr)
    if args.markdown is not None or args.plots is not None:
        from .report import markdown, plots

        written = plots(report, args.plots) if args.plots is not None else []
        for path in written:
            print(f"plot written to {path}", file=sys.stderr)
        if args.markdown is not None:
            _write(args.markdown, markdown(report, written, args.markdown.parent))
            print(f"tables written to {args.markdown}", file=sys.stderr)
    return 0


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc}") from None
