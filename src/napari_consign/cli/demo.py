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
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import CLIError
from .options import positive_int

DEFAULT_METHODS = "crc,coat"
SINGLE, PAIR = (700, 600), (700, 1200)  # screenshot sizes (height, width)
WINDOW = (1366, 768)  # a common laptop screen: the dock must fit beside the canvas


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
        "--bundles",
        type=Path,
        default=None,
        help="folder holding <method>.npz calibration bundles (default: the shipped ones)",
    )
    p.set_defaults(run=run)


def _parse_slices(text: str | None, n: int) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError:
        raise CLIError(f"--slices {text!r}: expected A:B, e.g. 30:50") from None
    if not 0 <= a < b <= n:
        raise CLIError(f"--slices {text}: need 0 <= A < B <= {n} (the demo scan has {n} slices)")
    return a, b


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


def _prepare_scan(work: Path, slices: tuple[int, int] | None) -> tuple[Path, Path]:
    """Paths of the demo scan and mask, cropped to ``slices`` (written into ``work``)."""
    from ..shipped import sample_data_path

    scan, mask = sample_data_path("demo_scan.nii.gz"), sample_data_path("demo_mask.nii.gz")
    if slices is None:
        return scan, mask
    import SimpleITK as sitk

    a, b = slices
    out = []
    for src in (scan, mask):
        img = sitk.ReadImage(str(src))
        stem = src.name.removesuffix(".nii.gz")
        dst = work / f"{stem}_z{a}-{b}.nii.gz"
        sitk.WriteImage(img[:, :, a:b], str(dst), useCompression=True)
        out.append(dst)
    return out[0], out[1]


def _calibration(widget, methods: list[str], bundles: Path | None) -> str:
    from .. import analysis as an
    from ..shipped import sample_data_path

    if bundles is not None:
        files = [bundles / f"{m}.npz" for m in methods]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise CLIError(f"--bundles {bundles}: missing {', '.join(missing)}")
        widget.set_calibration("files", files=files)
        return f"bundles from {bundles}"
    if all(an.bundled_bundle_path(m).is_file() for m in methods):
        widget.set_calibration("bundled")
        return "shipped bundles"
    print(
        "napari-consign demo: no shipped calibration bundles "
        f"({an.bundled_bundle_dir()}); calibrating now on the shipped 2D cases (slower)",
        file=sys.stderr,
    )
    widget.set_calibration("calibrate", source=sample_data_path("cases2d.npz"))
    widget.max_cases_spin.setValue(150)
    return "calibrated now on cases2d.npz (150 calibration cases)"


class _Steps:
    """Progress for people and logs: one line per stage and per status change of the run,
    with the seconds since the demo started, on stderr (a terminal or a CI log alike)."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self._last = ""

    def say(self, text: str) -> None:
        text = text.strip()
        if text and text != self._last:
            self._last = text
            print(
                f"[demo {time.monotonic() - self.start:6.1f} s] {text}", file=sys.stderr, flush=True
            )


def _wait(widget, app, steps: _Steps, timeout: float = 3600.0) -> None:
    start = time.monotonic()
    last_line = 0.0
    while widget.busy:
        app.processEvents()
        time.sleep(0.01)
        now = time.monotonic()
        if now - last_line > 2.0:  # at most one progress line every 2 s
            bar = widget.progress
            done = f" ({bar.value()}/{bar.maximum()})" if bar.maximum() > 1 else ""
            steps.say(widget.status.text() + done)
            last_line = now
        if now - start > timeout:
            widget.cancel()
            raise CLIError("the demo run took too long and was cancelled")
    app.processEvents()


def _focus_slice(viewer, layer, mask) -> int:
    """Show the axial slice with the most lesion voxels; returns its index."""
    import numpy as np

    z = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
    world = layer.data_to_world((z, 0, 0))
    viewer.dims.set_point(0, float(world[0]))
    return z


def run(args: argparse.Namespace) -> int:
    methods = _check_args(args)
    import torch  # noqa: F401  (before Qt: pytorch#11326)

    display = _Display(args.headless)
    try:
        return _run(args, methods)
    finally:
        display.stop()


def _run(args: argparse.Namespace, methods: list[str]) -> int:
    import tempfile

    import napari
    import numpy as np
    from napari.qt import get_qapp

    from ..guarantee_text import guarantee
    from ..io import read_volume

    out = args.out
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    steps = _Steps()
    steps.say("reading the demo scan")
    with tempfile.TemporaryDirectory(prefix="napari-consign-demo-") as tmp:
        full = read_volume(_prepare_scan(Path(tmp), None)[0])
        slices = _parse_slices(args.slices, full.array.shape[0])
        scan_path, mask_path = _prepare_scan(Path(tmp), slices)
        app = get_qapp()
        steps.say("opening napari and the widget (Plugins > Conformal uncertainty)")
        viewer = napari.Viewer(show=True, title="napari-consign demo")
        try:
            [image] = viewer.open(str(scan_path), plugin="napari-consign")
            mask = read_volume(mask_path)
            truth_kw = mask.layer_kwargs()
            truth_kw["name"] = "demo lesions (ground truth)"
            truth = viewer.add_labels(mask.array.astype(np.uint8), opacity=0.4, **truth_kw)
            truth.visible = False
            _dock, widget = viewer.window.add_plugin_dock_widget(
                "napari-consign", "Conformal uncertainty"
            )
            viewer.window.resize(*WINDOW)
            calibration = _calibration(widget, methods, args.bundles)
            widget.set_image(image)
            widget.set_truth(truth)
            widget.ns_spin.setValue(args.n_samples)
            widget.device_combo.setCurrentText(args.device)
            if widget.device_combo.currentText() != args.device:
                raise CLIError(f"--device {args.device}: not available here")
            widget.set_methods(methods)
            missing = [m for m in methods if m not in widget.selected_methods()]
            if missing:
                why = widget.available_methods()
                raise CLIError(
                    "; ".join(f"{m.upper()}: {why.get(m) or 'unavailable'}" for m in missing)
                )
            widget.set_alpha(args.alpha)
            z = _focus_slice(viewer, image, mask.array)
            started = time.perf_counter()
            steps.say(
                f"running {', '.join(m.upper() for m in methods)} on {image.data.shape} voxels"
            )
            if widget.run() is None:
                raise CLIError(widget.status.text() or "the run was refused")
            _wait(widget, app, steps)
            steps.say(widget.status.text())
            took = time.perf_counter() - started
            analysis = widget.analysis(image)
            if analysis is None or not analysis.bands:
                raise CLIError(f"the demo run failed: {widget.status.text()}")
            done = [m for m in methods if m in analysis.bands]
            pair = done[:2] if len(done) >= 2 else None
            if not args.headless:
                if pair:
                    widget.set_compare(True, *pair)
                viewer.reset_view()
                napari.run()
                return 0
            steps.say("screenshots")
            files = _screenshots(viewer, widget, image, truth, done, pair, out, app, z)
            numbers = widget.numbers(image)
            report = {
                "scan": str(scan_path.name),
                "shape_zyx": list(image.data.shape),
                "spacing_mm_zyx": list(analysis.spacing_zyx or ()),
                "slices": list(slices) if slices else None,
                "focus_slice": z,
                "model_id": analysis.model_id,
                "n_samples": args.n_samples,
                "calibration": calibration,
                "alpha": widget.alpha,
                "seconds": round(took, 2),
                "methods": {
                    m: {
                        **{k: _plain(v) for k, v in numbers[m].items()},
                        "n_used": analysis.bands[m].info.get("n_used"),
                        "guarantee": guarantee(m, numbers[m]["alpha"], analysis.beta(m)),
                    }
                    for m in done
                },
                "failed": dict(analysis.errors),
                "screenshots": [f.name for f in files],
            }
            metrics = out / "metrics.json"
            metrics.write_text(json.dumps(report, indent=2))
            steps.say(f"done: {len(files)} screenshots and metrics.json in {out}")
            for f in [*files, metrics]:
                print(f)
            return 0
        finally:
            if args.headless:
                viewer.close()


def _plain(v):
    try:
        return float(v) if not isinstance(v, int) else v
    except (TypeError, ValueError):
        return v


def _caption(methods: list[str], alpha: float, z: int, legend: str) -> str:
    names = " vs ".join(m.upper() for m in methods)
    return f"{names} · α = {alpha:.2f} · axial slice {z}, radiological\n{legend}"


def _legend_text(methods: list[str], disagreement: bool = False) -> str:
    if disagreement:
        a, b = (m.upper() for m in methods)
        return f"cyan: {a} only · rose: {b} only\npear: both outer bands · white: ground truth"
    from ..palette import METHOD_COLOUR_NAMES

    parts = [f"{m.upper()}: {METHOD_COLOUR_NAMES.get(m, '')}" for m in methods]
    return "\n".join([*parts, "white outline: ground truth"])


def _screenshots(viewer, widget, image, truth, done, pair, out: Path, app, z: int) -> list[Path]:
    files = [out / "window.png"]
    app.processEvents()
    viewer.screenshot(path=str(files[0]), canvas_only=False, flash=False)
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)  # napari >= 0.9
    overlay = overlays.text if overlays is not None else viewer.text_overlay
    overlay.visible = True
    overlay.font_size = 9
    overlay.color = "white"
    truth.visible = True  # the ground truth as a thin white outline
    truth.contour = 1
    truth.opacity = 1.0
    truth.colormap = {0: "transparent", None: (1.0, 1.0, 1.0, 1.0)}
    layers = viewer.layers
    layers.move(layers.index(truth), len(layers))  # the outline on top of the bands

    def shot(name: str, size: tuple[int, int], methods: list[str], disagreement=False) -> None:
        overlay.text = _caption(methods, widget.alpha, z, _legend_text(methods, disagreement))
        viewer.reset_view()
        app.processEvents()
        path = out / name
        viewer.screenshot(path=str(path), size=size, canvas_only=True, flash=False)
        files.append(path)

    bands = {m: widget.band_layer(m, image) for m in done}
    for m in done:
        for other, layer in bands.items():
            layer.visible = other == m
        shot(f"bands_{m}.png", SINGLE, [m])
    for layer in bands.values():
        layer.visible = True
    if pair:
        widget.set_compare(True, *pair)
        truth.visible = False  # the grid shows two panels; the caption names both methods
        shot("compare.png", PAIR, list(pair))
        widget.set_compare(False)
        truth.visible = True
        for layer in bands.values():
            layer.visible = False
        widget.set_disagreement(True, *pair)
        shot("disagreement.png", SINGLE, list(pair), disagreement=True)
        widget.set_disagreement(False)
        for layer in bands.values():
            layer.visible = True
    return files
