"""The ``napari-consign`` command: the same core as the widget, without a GUI.

Every subcommand module exposes ``add_parser(subparsers)`` (which sets ``run`` as its default)
and raises :class:`CLIError` (or a core input error) on bad input: the command then exits with
code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from ..conformal.errors import ConformalInputError
from ..io.errors import ConsignIOError
from . import calibrate, demo, evaluate, predict, sample
from .errors import CLIError

SUBCOMMANDS = (calibrate, predict, evaluate, sample, demo)


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line (and exit code 2), not a usage block. Abbreviated flags are
    refused (``--method`` must not silently mean ``--methods``); subcommands inherit both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="napari-consign",
        description="Conformal uncertainty bands for medical image segmentation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


#: Errors that mean bad input (exit code 2, one line), by module, for those whose module
#: imports torch: they can only have been raised if their module was loaded.
_LAZY_INPUT_ERRORS = (("napari_consign.models.loading", "ModelLoadError"),)


def _input_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = [CLIError, ConformalInputError, ConsignIOError]
    for module, name in _LAZY_INPUT_ERRORS:
        if module in sys.modules:
            types.append(getattr(sys.modules[module], name))
    return tuple(types)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 with one line on stderr for bad input)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or an argument error already printed as one line
        return int(exc.code or 0)
    try:
        return int(args.run(args) or 0)
    except (OSError, MemoryError) as exc:  # a folder, disk or memory problem: not a bug
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"napari-consign {args.command}: error: {reason}{where}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not isinstance(exc, _input_error_types()):
            raise
        print(f"napari-consign {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-consign {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
