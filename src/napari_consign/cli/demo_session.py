"""The demo in napari: open the demo scan, dock the widget, run the methods, report.

``run_demo`` reads the shipped demo scan (cropped to ``--slices``) or the user's ``--scan``,
opens it in a napari viewer with the plugin's reader, adds the ground truth (``--truth``; none
for a user's scan without it), docks the "Conformal uncertainty" widget at
1366 x 768, sets its calibration (``--bundles``, the shipped bundles, or calibrating now on the
shipped 2D cases), runs the methods and waits, printing progress lines on stderr. Interactive:
shows the first two methods side by side and hands napari to the user. Headless: writes the
screenshots (``demo_shots``) and ``metrics.json`` to ``--out`` and prints their paths. Bad
flags or a failed run raise ``CLIError``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .demo_shots import screenshots
from .errors import CLIError

WINDOW = (1366, 768)  # a common laptop screen: the dock must fit beside the canvas


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


def _inputs(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """The scan and its mask: ``--scan``/``--truth`` (the mask may be None), else the demo's."""
    from ..shipped import sample_data_path

    if args.scan is not None:
        return args.scan, args.truth
    return sample_data_path("demo_scan.nii.gz"), sample_data_path("demo_mask.nii.gz")


def _prepare_scan(
    work: Path, scan: Path, mask: Path | None, slices: tuple[int, int] | None
) -> tuple[Path, Path | None]:
    """Paths of the demo scan and mask, cropped to ``slices`` (written into ``work``)."""
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
    """Show the axial slice with the most lesion voxels (the middle one without a mask);
    returns its index."""
    import numpy as np

    if mask is None or not mask.any():
        z = int(layer.data.shape[0] // 2)
    else:
        z = int(np.argmax(mask.reshape(mask.shape[0], -1).sum(axis=1)))
    world = layer.data_to_world((z, 0, 0))
    viewer.dims.set_point(0, float(world[0]))
    return z


def run_demo(args: argparse.Namespace, methods: list[str]) -> int:
    """Run the demo for checked ``args`` and ``methods``; 0 when done (see the module)."""
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
    scan_in, mask_in = _inputs(args)
    steps.say(f"reading {scan_in.name}")
    with tempfile.TemporaryDirectory(prefix="napari-consign-demo-") as tmp:
        n_slices = read_volume(scan_in).array.shape[0]  # a bad scan fails here, in one line
        slices = _parse_slices(args.slices, n_slices)
        scan_path, mask_path = _prepare_scan(Path(tmp), scan_in, mask_in, slices)
        app = get_qapp()
        steps.say("opening napari and the widget (Plugins > Conformal uncertainty)")
        viewer = napari.Viewer(show=True, title="napari-consign demo")
        try:
            opened = viewer.open(str(scan_path), plugin="napari-consign")
            if len(opened) != 1:
                raise CLIError(f"{scan_path}: holds {len(opened)} scans; give one file or series")
            [image] = opened
            truth = mask = None
            if mask_path is not None:
                mask_volume = read_volume(mask_path)
                mask = mask_volume.array
                if mask.shape != tuple(image.data.shape):
                    raise CLIError(
                        f"--truth {mask_path}: shape {mask.shape}, the scan {image.data.shape}"
                    )
                truth_kw = mask_volume.layer_kwargs()
                truth_kw["name"] = (
                    f"{image.name} (ground truth)" if args.scan else "demo lesions (ground truth)"
                )
                truth = viewer.add_labels(mask.astype(np.uint8), opacity=0.4, **truth_kw)
                truth.visible = False
            _dock, widget = viewer.window.add_plugin_dock_widget(
                "napari-consign", "Conformal uncertainty"
            )
            viewer.window.resize(*WINDOW)
            calibration = _calibration(widget, methods, args.bundles)
            widget.set_image(image)
            if truth is not None:
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
            z = _focus_slice(viewer, image, mask)
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
            files = screenshots(viewer, widget, image, truth, done, pair, out, app, z)
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
