"""``napari-consign evaluate``: methods over random calibration/test splits of an NPZ.

Only the arguments are handled here: the splits, the metrics and the report are
:func:`napari_consign.conformal.evaluation.evaluate` (Python users get the same report without
argparse). Each split is one job, run serially or on Dask (``--workers``/``--scheduler``) with
identical results. ``--markdown`` and ``--plots`` write the papers' tables and figures
(:mod:`.report`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..cases import stack_sets
from ..conformal.crc_rule import check_alpha
from ..conformal.evaluation import check_methods, evaluate
from ..conformal.registry import METHODS, MethodOptions
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


def _load(args: argparse.Namespace, methods: list[str], options: MethodOptions):
    """``(data, units per scan or None, source)`` from ``--samples`` or ``--cases``."""
    if args.samples is not None:
        return load_segmentation_set(args.samples), None, str(args.samples)
    keep = any(m.reads_samples or m.reads_variance for m in check_methods(methods, options))
    (sets,), _ = sample_folders(args, [args.cases], keep, options.device)
    return stack_sets(sets), np.array([len(s) for s in sets]), str(args.cases)


def run(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods)
    alphas = [check_alpha(a) for a in (parse_alphas(args.alphas) if args.alphas else [])]
    primary = check_alpha(args.alpha)
    _check_outputs(args)
    options = replace(method_options(args), alpha=primary)
    check_methods(methods, options)  # names and settings, before any scan is sampled
    data, units_per_scan, source = _load(args, methods, options)
    found = evaluate(
        data,
        methods,
        primary,
        args.splits,
        args.seed,
        args.cal_fraction,
        args.train_fraction,
        options,
        alphas=alphas,
        units_per_scan=units_per_scan,
        map_jobs=lambda func, jobs, shared: map_scaled(func, jobs, args, "splits", shared),
    )
    report = {REPORT_KEY: "napari-consign evaluate", **found, "samples_file": source}
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
