"""``napari-consign calibrate``: labelled scans (or an NPZ of samples) to calibration bundles.

    napari-consign calibrate --cases DIR --methods crc,coat --out DIR
                             [--train DIR | --train-fraction 0.25] [--model FILE ...]
                             [--n-samples 10] [--workers N | --scheduler ADDRESS]
    napari-consign calibrate --samples FILE.npz --methods crc --out DIR [--model-id ID]

Scans are paired by the rule in :mod:`napari_consign.cases`; every axial slice with a
non-empty mask is one 2D unit. Each scan is sampled with the chosen model (default: the bundled
UNet) under its own seed, serially or as one Dask job per scan (``--workers``/``--scheduler``):
the bundles are identical either way. AT/COAT train their threshold predictor on separate
scans: ``--train DIR`` or ``--train-fraction`` of the scans (whole scans, drawn with
``--seed``). One bundle per method is written to ``--out`` as ``<method>.npz``, with the model
identity.
"""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from ..calibration import save_bundle
from ..cases import stack_sets
from ..conformal.evaluation import check_methods
from ..conformal.registry import METHODS
from ..io.safe_write import check_target
from ..npz_contract import load_segmentation_set
from ..parallel import progress_bar
from ..pipeline import fit_methods
from .errors import CLIError
from .options import (
    add_method_arguments,
    add_scale_out_arguments,
    method_options,
    nonnegative_int,
    parse_methods,
)
from .scans import add_sampling_arguments, sample_folders, say


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="calibrate conformal methods on labelled scans; write one bundle per method",
        description="Calibrate methods on a folder of image + mask scans (X.nii.gz + "
        "X_mask.nii.gz, or images/ + masks/ with equal names; NIfTI or DICOM folders) or on "
        "an NPZ of Monte-Carlo samples, and write <method>.npz bundles.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cases", type=Path, help="folder of image + mask pairs")
    src.add_argument("--samples", type=Path, help="NPZ of samples + masks (NPZ contract)")
    p.add_argument("--out", required=True, type=Path, help="folder for the bundles")
    p.add_argument("--methods", default="crc", help=f"comma-separated: {', '.join(METHODS)}")
    p.add_argument("--train", type=Path, help="AT/COAT: folder of scans to train predictors on")
    p.add_argument(
        "--train-fraction",
        type=float,
        default=0.25,
        help="AT/COAT without --train: fraction of the scans (NPZ: units) used for "
        "training, never for calibration (default 0.25)",
    )
    add_sampling_arguments(p)
    p.add_argument("--model-id", help="--samples only: model identity if the NPZ lacks one")
    p.add_argument(
        "--seed", type=nonnegative_int, default=0, help="sampling, split and training seed"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing bundles")
    add_method_arguments(p)
    add_scale_out_arguments(p)
    p.set_defaults(run=run)


def _train_cal_order(n: int, fraction: float, seed: int, what: str) -> tuple[list, list]:
    """Indices of the training and calibration parts: ``fraction`` of ``n`` items train."""
    n_train = round(fraction * n)
    if not 1 <= n_train < n:
        raise CLIError(
            f"{n} {what} cannot give {fraction:g} of them for training and the rest for "
            "calibration; add data, change --train-fraction or use --train"
        )
    order = np.random.default_rng(seed).permutation(n)
    return list(order[:n_train]), list(order[n_train:])


def _from_npz(args, needs_training: bool):
    """``(train, cal, identity, how)`` from ``--samples``; ``how``: what the NPZ records of
    its sampling (mode, N_s, model settings id) for the bundle's ``extra``."""
    data = load_segmentation_set(args.samples)
    with np.load(args.samples, allow_pickle=False) as z:
        recorded = {
            k: str(z[k]) for k in ("model_identity", "model_settings", "mode") if k in z.files
        }
    identity = recorded.get("model_identity") or args.model_id
    if identity is None:
        raise CLIError(
            f"{args.samples} records no model_identity; pass --model-id (the model's sha256)"
        )
    how = {"n_samples": None if data.samples is None else int(data.samples.shape[1])}
    if "mode" in recorded:
        how["mode"] = recorded["mode"]
    if "model_settings" in recorded:
        how["model_settings"] = recorded["model_settings"]
    if not needs_training:
        return None, data, identity, how
    train, cal = _train_cal_order(len(data), args.train_fraction, args.seed, "units")
    return data.subset(np.array(train)), data.subset(np.array(cal)), identity, how


def _finish(method, quiet: bool) -> None:
    """Compute what the bundle stores and is otherwise computed on demand (CONSIGN: one
    lambda search per alpha level, the slow part), with a progress bar if there is work."""
    with ExitStack() as stack:
        bars = []

        def step(done: int, total: int) -> None:
            if not bars:
                desc = f"{method.label} alpha levels"
                bars.append(stack.enter_context(progress_bar(total, desc, quiet)))
            bars[0].update(1)

        method.finish_calibration(progress=step)


def run(args: argparse.Namespace) -> int:
    from ..models.loading import model_settings_id  # imports torch

    names = parse_methods(args.methods)
    options = method_options(args)
    # instantiating checks every method's settings before any scan is sampled
    instances = check_methods(names, options)
    needs_training = any(m.needs_training for m in instances)
    targets = [args.out / f"{m}.npz" for m in names]
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} is a file; give a folder")
    existing = [t.name for t in targets if t.exists()]
    if existing and not args.overwrite:
        raise CLIError(f"{args.out} already holds {', '.join(existing)}; pass --overwrite")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create --out {args.out}: {exc.strerror}") from None
    inputs = [args.samples] if args.samples is not None else []
    for t in targets:  # before any work: never an input, a scan or another file
        check_target(t, "bundle", inputs=inputs, overwrite=args.overwrite)
    if not 0.0 < args.train_fraction < 1.0:
        raise CLIError(f"--train-fraction must lie in (0, 1), got {args.train_fraction}")
    if args.samples is not None:
        if not args.samples.is_file():
            raise CLIError(f"{args.samples}: no such file")
        train, cal, identity, how = _from_npz(args, needs_training)
    else:
        how = {
            "n_samples": args.n_samples,
            "mode": "ensemble" if len(args.model or ()) > 1 else args.mode,
            "model_settings": model_settings_id(args.model or ()),
        }
        keep = any(m.reads_samples or m.reads_variance for m in instances)
        folders = [args.cases] + ([args.train] if args.train and needs_training else [])
        groups, identity = sample_folders(args, folders, keep, options.device)
        if args.train is not None and needs_training:
            train, cal = stack_sets(groups[1]), stack_sets(groups[0])
        elif needs_training:
            tr, ca = _train_cal_order(
                len(groups[0]), args.train_fraction, args.seed, "scan(s) with structure"
            )
            train = stack_sets([groups[0][i] for i in tr])
            cal = stack_sets([groups[0][i] for i in ca])
        else:
            train, cal = None, stack_sets(groups[0])
    say(
        args,
        f"calibrating {', '.join(names)} on {len(cal)} units"
        + (f", training predictors on {len(train)}" if train is not None else ""),
    )
    with progress_bar(len(names), "calibrating", args.quiet) as bar:
        fitted = fit_methods(names, cal, train, options, progress=lambda _: bar.update(1))
    extra = {
        **how,
        "seed": args.seed,
        "calibration": str(args.samples or args.cases),
        "n_cal_units": len(cal),
        "n_train_units": 0 if train is None else len(train),
    }
    for (name, method), target in zip(fitted.items(), targets, strict=True):
        _finish(method, args.quiet)
        save_bundle(target, method, identity, overwrite=args.overwrite, extra=extra)
        print(f"{name}: {target}")
    return 0
