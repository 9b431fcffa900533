"""``napari-consign evaluate``: methods over random calibration/test splits of an NPZ."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..conformal.evaluation import evaluate
from ..conformal.registry import METHODS, MethodOptions
from ..npz_contract import load_segmentation_set
from .errors import CLIError

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
    p.add_argument("--alpha", type=float, default=0.1, help="error level (default 0.1)")
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
    p.add_argument(
        "--beta",
        type=float,
        default=0.9,
        help="CONSIGN / pixel-wise: accuracy level of beta-equality (default 0.9)",
    )
    p.add_argument("--k", type=int, default=5, help="CONSIGN: principal components (default 5)")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device for methods that train or optimise (default cpu)",
    )
    p.add_argument(
        "--predictor",
        choices=("conditioned", "per-alpha"),
        default="conditioned",
        help="AT/COAT: one alpha-conditioned threshold predictor (default) or one per alpha",
    )
    p.add_argument(
        "--use-variance",
        action="store_true",
        help="AT/COAT: also feed the MC standard deviation to the predictor",
    )
    p.add_argument(
        "--score-space",
        choices=("logit", "probability"),
        default="logit",
        help="AT/COAT: space of the training loss; 'probability' is the paper's (default logit)",
    )
    p.add_argument(
        "--input-size",
        type=int,
        default=64,
        help="AT/COAT: predictor input side in pixels (default 64)",
    )
    p.add_argument("--epochs", type=int, default=60, help="AT/COAT training epochs (default 60)")
    p.add_argument("--json", type=Path, default=None, help="write the report here")
    p.set_defaults(run=run)


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
    methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
    if args.json is not None and args.json.resolve() == args.samples.resolve():
        raise CLIError("--json would overwrite the input samples file; choose another path")
    data = load_segmentation_set(args.samples)
    report = evaluate(
        data,
        methods,
        alpha=args.alpha,
        splits=args.splits,
        seed=args.seed,
        cal_fraction=args.cal_fraction,
        train_fraction=args.train_fraction,
        options=MethodOptions(
            beta=args.beta,
            k=args.k,
            seed=args.seed,
            device=args.device,
            conditioned=args.predictor == "conditioned",
            use_variance=args.use_variance,
            epochs=args.epochs,
            score_space=args.score_space,
            input_size=args.input_size,
        ),
    )
    report["samples_file"] = str(args.samples)
    print(format_table(report))
    if args.json is not None:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2))
        except OSError as exc:
            raise CLIError(f"cannot write {args.json}: {exc}") from None
        print(f"report written to {args.json}", file=sys.stderr)
    return 0
