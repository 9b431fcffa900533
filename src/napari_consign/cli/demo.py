"""``napari-consign demo``: the sample scan in napari with CRC and COAT bands side by side.

Without ``--headless``: opens napari with the demo scan (read by the plugin's reader), its
ground-truth lesions, the "Conformal uncertainty" widget docked, runs the chosen methods (CRC
and COAT by default) and shows them side by side (grid mode); then hands over to the user.

With ``--headless --out DIR``: the same in a window on a virtual display (Xvfb through
PyVirtualDisplay when no ``DISPLAY`` is set; never Qt's offscreen platform, whose canvas
screenshots are blank), then writes to ``DIR``:

* ``window.png``: the whole napari window at 1366 x 768 with the widget as the Plugins menu
  opens it, right after the run;
* ``bands_<method>.png``: the scan and one method's bands in its colours (inner band filled,
  the outer band's contour), the ground truth outlined in white, a caption with method,
  alpha, slice and legend;
* ``compare.png``: two methods side by side (titled panels); ``disagreement.png``: where their
  outer bands differ (cyan: first only, rose: second only, pear: both);
* ``metrics.json``: per method the band volumes in mL, the outer band's TPR and the inner
  band's false positives against the demo mask, and the guarantee in words;

and exits 0. Calibration: the shipped bundles (``sample_data/bundles/<method>.npz``), or
``--bundles DIR``; if neither exists, the methods are calibrated now on the shipped 2D cases
(slower, said on stderr).

This module is the subcommand: its flags, their checks and the display the window opens on;
the run itself is ``demo_session``, the pictures ``demo_shots``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .demo_session import run_demo
from .errors import CLIError
from .options import positive_int

DEFAULT_METHODS = "crc,coat"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="open the sample scan in napari with CRC and COAT bands side by side",
        description="Open the demo scan in napari, compute conformal bands with the bundled "
        "model and show two methods side by side. With --headless --out DIR, write "
        "screenshots and metrics instead and exit.",
    )
    p.add_argument(
        "--headless",
        action="store_true",
        help="no interactive window: write screenshots and metrics.json to --out, then exit",
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (with --headless)")
    p.add_argument(
        "--methods",
        default=DEFAULT_METHODS,
        help=f"comma-separated methods, the first two are compared (default {DEFAULT_METHODS})",
    )
    p.add_argument("--alpha", type=float, default=0.1, help="error level (default 0.1)")
    p.add_argument(
        "--n-samples",
        type=positive_int,
        default=10,
        help="Monte-Carlo samples per slice (default 10)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--slices",
        default=None,
        metavar="A:B",
        help="analyse only axial slices A..B-1 of the demo scan (faster)",
    )
    p.add_argument(
        "--scan",
        type=Path,
        default=None,
        help="a scan of your own (NIfTI, or a DICOM file or folder) instead of the demo scan",
    )
    p.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="its ground-truth mask, on the scan's grid (optional; only with --scan)",
    )
    p.add_argument(
        "--bundles",
        type=Path,
        default=None,
        help="folder holding <method>.npz calibration bundles (default: the shipped ones)",
    )
    p.set_defaults(run=run)


def _check_args(args: argparse.Namespace) -> list[str]:
    from ..analysis import METHOD_NAMES

    methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_NAMES]
    if not methods or unknown:
        raise CLIError(
            f"--methods {args.methods!r}: choose from {', '.join(METHOD_NAMES)} (comma-separated)"
        )
    if not 0 < args.alpha < 1:
        raise CLIError(f"--alpha {args.alpha}: must lie in (0, 1)")
    if args.n_samples < 2:
        raise CLIError("--n-samples must be at least 2")
    if args.headless and args.out is None:
        raise CLIError("--headless needs --out DIR for the screenshots and metrics")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} exists and is not a folder")
    if args.scan is not None and args.slices is not None:
        raise CLIError("--slices crops the demo scan only; not with --scan")
    if args.truth is not None and args.scan is None:
        raise CLIError("--truth needs --scan (the demo scan brings its own ground truth)")
    for flag, path in (("--scan", args.scan), ("--truth", args.truth)):
        if path is not None and not path.exists():
            raise CLIError(f"{flag} {path}: no such file or folder")
    if args.bundles is not None and not args.bundles.is_dir():
        raise CLIError(f"--bundles {args.bundles}: no such folder")
    return methods


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _qt_app_exists() -> bool:
    from qtpy.QtWidgets import QApplication

    return QApplication.instance() is not None


class _Display:
    """Headless: a virtual X display (Xvfb via PyVirtualDisplay), so no window shows up.

    Falls back to the current display when Xvfb is unavailable but one is set, and does
    nothing when Qt already runs (it cannot change displays, e.g. under pytest-xvfb).
    """

    def __init__(self, headless: bool) -> None:
        self.display = None
        if not headless:
            if not _has_display():
                raise CLIError("no display to open napari on: use --headless --out DIR")
            return
        if _qt_app_exists():
            return
        try:
            from pyvirtualdisplay import Display

            self.display = Display(visible=False, size=(1600, 1100), color_depth=24)
            self.display.start()
        except Exception as exc:
            self.display = None
            if not _has_display():
                raise CLIError(
                    f"no display and no virtual display ({type(exc).__name__}: {exc}); "
                    "pip install PyVirtualDisplay and apt-get install xvfb, or use xvfb-run"
                ) from None

    def stop(self) -> None:
        if self.display is not None:
            self.display.stop()


def run(args: argparse.Namespace) -> int:
    methods = _check_args(args)
    import torch  # noqa: F401  (before Qt: pytorch#11326)

    display = _Display(args.headless)
    try:
        return run_demo(args, methods)
    finally:
        display.stop()
