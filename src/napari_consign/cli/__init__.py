"""The ``napari-consign`` command: the same core as the widget, without a GUI.

Every subcommand module exposes ``add_parser(subparsers)`` (which sets ``run`` as its default)
and raises :class:`CLIError` (or a core input error) on bad input: the command then exits with
code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..conformal.errors import ConformalInputError
from ..io.errors import ConsignIOError
from . import calibrate, demo, evaluate, predict, sample
from .errors import CLIError

SUBCOMMANDS = (calibrate, predict, evaluate, sample, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-consign",
        description="Conformal uncertainty bands for medical image segmentation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except (CLIError, ConformalInputError, ConsignIOError) as exc:
        print(f"napari-consign {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-consign {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
