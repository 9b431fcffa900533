"""Flags that several subcommands share, parsed into the core's types.

Methods and alphas are checked here so a typo exits with code 2 and one line; the methods'
settings become :class:`~napari_consign.conformal.registry.MethodOptions`; ``--workers`` and
``--scheduler`` select the serial or the Dask path of :func:`napari_consign.parallel.map_jobs`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from ..conformal.registry import METHODS, MethodOptions
from .errors import CLIError


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse prints the error as one line)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def parse_methods(text: str) -> list[str]:
    """Method names from ``crc,coat``; :class:`CLIError` for an unknown one."""
    names = list(dict.fromkeys(m.strip().lower() for m in text.split(",") if m.strip()))
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise CLIError(
            f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from "
            f"{', '.join(METHODS)}"
        )
    return names


def parse_alphas(text: str) -> list[float]:
    """``0.05,0.1`` -> [0.05, 0.1]; :class:`CLIError` unless each lies in (0, 1)."""
    try:
        alphas = [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise CLIError(f"alpha {text!r}: expected numbers like 0.05,0.1") from None
    if not alphas or any(not 0.0 < a < 1.0 for a in alphas):
        raise CLIError(f"alpha {text!r}: every level must lie in (0, 1)")
    return list(dict.fromkeys(alphas))


def add_method_arguments(p: argparse.ArgumentParser) -> None:
    """The methods' settings (:class:`MethodOptions`), for calibrate and evaluate."""
    p.add_argument(
        "--beta",
        type=float,
        default=0.9,
        help="CONSIGN / pixel-wise: accuracy level of beta-equality (default 0.9)",
    )
    p.add_argument(
        "--k", type=positive_int, default=5, help="CONSIGN: principal components (default 5)"
    )
    p.add_argument(
        "--device",
        default="auto",
        help="torch device for sampling and for methods that train or optimise: auto (CUDA, "
        "then MPS, then CPU), cpu, cuda, cuda:N or mps (default auto)",
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
        choices=("probability", "logit"),
        default="probability",
        help="AT/COAT: space of the training loss: 'probability' is the paper's (default), "
        "'logit' separates thresholds near 0 or 1",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="COAT: temperature T of the soft mask sigmoid((p - tau) / T) (default 0.05 in "
        "probability space, 0.5 in logit space)",
    )
    p.add_argument(
        "--input-size",
        type=positive_int,
        default=64,
        help="AT/COAT: predictor input side in pixels (default 64)",
    )
    p.add_argument(
        "--epochs", type=positive_int, default=60, help="AT/COAT training epochs (default 60)"
    )


def method_options(args: argparse.Namespace) -> MethodOptions:
    """:class:`MethodOptions` from the flags of :func:`add_method_arguments` (and ``--seed``)."""
    return MethodOptions(
        beta=args.beta,
        k=args.k,
        seed=args.seed,
        device=check_device(args.device),
        conditioned=args.predictor == "conditioned",
        use_variance=args.use_variance,
        epochs=args.epochs,
        score_space=args.score_space,
        temperature=args.temperature,
        input_size=args.input_size,
    )


def check_device(text: str) -> str:
    """The torch device ``text`` resolves to here ("auto" picks CUDA, MPS, then CPU).

    :class:`CLIError` when it does not exist or fails a test allocation.
    """
    from ..conformal.device import DeviceError, resolve_device

    try:
        return str(resolve_device(text))
    except DeviceError as exc:
        raise CLIError(f"--device: {exc}") from None


def add_scale_out_arguments(p: argparse.ArgumentParser) -> None:
    """``--workers``, ``--scheduler`` and ``--quiet`` (shared by calibrate and evaluate)."""
    p.add_argument(
        "--workers",
        type=positive_int,
        default=1,
        help="Dask worker processes on this machine (default 1: no Dask)",
    )
    p.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def map_scaled(
    func: Callable[..., Any],
    jobs: Sequence[Any],
    args: argparse.Namespace,
    desc: str,
    shared: Any = None,
) -> list[Any]:
    """:func:`napari_consign.parallel.map_jobs` with the CLI's flags and errors."""
    from ..parallel import ParallelError, map_jobs

    try:
        return map_jobs(
            func,
            jobs,
            shared=shared,
            workers=args.workers,
            scheduler=args.scheduler,
            desc=desc,
            quiet=args.quiet,
        )
    except ParallelError as exc:
        raise CLIError(str(exc)) from None
