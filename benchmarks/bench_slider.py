"""Alpha-slider latency as a person sees it: value set -> events processed -> frame repainted.

Runs the real widget (opened from the Plugins menu) in a shown napari window (a virtual display
when there is no DISPLAY). Two methods are shown at once. For each volume and view:

* ``tick``: ``alpha_slider.setValue`` (the user's drag) until the canvas has drawn the next
  frame (a draw-event hook placed after the scene, then ``glFinish``);
* ``redraw``: napari's own redraw of an unchanged frame, a camera nudge (the baseline). In 3D
  the baseline is the scan alone (band layers hidden), as the issue's target asks;
* ``first 3D``: switching to 3D with the bands shown against the scan alone;
* ``uploads``: volume textures uploaded during the ticks (0 means the tick changed only what
  the shader reads).

Volumes: the demo scan (80 x 112 x 96) run for real (bundled model, shipped CRC and COAT
bundles); a 1 mm brain's shape (181 x 217 x 181) and 300 x 512 x 512, whose bands are two
threshold sets on a smooth synthetic probability map (about rendering, not the model).

Run: ``python benchmarks/bench_slider.py [--repeats 5] [--sizes demo,brain,large]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

SIZES = {"demo": (80, 112, 96), "brain": (181, 217, 181), "large": (300, 512, 512)}
TICKS = (12, 25, 8, 30, 18, 40, 5, 22)  # slider positions (alpha x 100)


def _display():
    if os.environ.get("DISPLAY"):
        return None
    from pyvirtualdisplay import Display

    d = Display(visible=False, size=(1366, 768), color_depth=24)
    d.start()
    return d


def synthetic_map(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A smooth probability map with a few blob-like structures, float32, slab by slab."""
    rng = np.random.default_rng(seed)
    z, y, x = (np.linspace(0, 1, s, dtype=np.float32) for s in shape)
    centres = rng.uniform(0.25, 0.75, size=(4, 3)).astype(np.float32)
    radii = rng.uniform(0.05, 0.12, size=4).astype(np.float32)
    out = np.zeros(shape, np.float32)
    for k in range(shape[0]):
        for c, r in zip(centres, radii, strict=True):
            d2 = (z[k] - c[0]) ** 2 + (y[:, None] - c[1]) ** 2 + (x[None, :] - c[2]) ** 2
            out[k] = np.maximum(out[k], np.exp(-d2 / (2 * r * r)))
    return out


def two_methods(prob: np.ndarray) -> dict:
    """Two methods' bands on one map: CRC-like thresholds, the second a little wider."""
    from napari_consign.conformal.bands import Bands

    alphas = np.arange(1, 51) / 100.0
    out = {}
    for name, shift in (("crc", 0.0), ("coat", 0.05)):
        tau_outer = np.clip(0.2 + 0.8 * alphas - shift, 0.01, 0.99)
        tau_inner = np.clip(0.95 - 0.6 * alphas - shift, 0.02, 0.99)
        out[name] = Bands.from_thresholds(prob, alphas, tau_outer, tau_inner, method=name)
    return out


class Frames:
    """Times from an action to the end of the next frame the canvas draws."""

    def __init__(self, viewer, app) -> None:
        self.app = app
        self.canvas = viewer.window._qt_viewer.canvas._scene_canvas
        self._drawn: list[float] = []
        self.canvas.events.draw.connect(self._on_draw, position="last")

    def _on_draw(self, event=None) -> None:
        self.canvas.context.finish()
        self._drawn.append(time.perf_counter())

    def time(self, action, timeout: float = 300.0) -> float:
        self.settle()
        self._drawn.clear()
        start = time.perf_counter()
        action()
        self.canvas.update()
        while not self._drawn and time.perf_counter() - start < timeout:
            self.app.processEvents()
        return (self._drawn[0] - start) * 1000 if self._drawn else float("nan")

    def settle(self) -> None:
        for _ in range(3):
            self.app.processEvents()


def _nudge(viewer) -> None:
    camera = viewer.camera
    centre = np.asarray(camera.center, float)
    camera.center = tuple(centre + 1e-3)


def _demo_run(viewer, widget, app):
    """The demo scan through the reader and a real run: the bundled model, the shipped CRC
    and COAT bundles (what a user of the demo waits for)."""
    from napari_consign._sample_data import sample_data_path

    [image] = viewer.open(str(sample_data_path("demo_scan.nii.gz")), plugin="napari-consign")
    widget.set_calibration("bundled")
    widget.device_combo.setCurrentText("cpu")
    widget.set_methods(["crc", "coat"])
    widget.run(image)
    while widget.busy:
        app.processEvents()
        time.sleep(0.01)
    analysis = widget.analysis(image)
    if analysis is None or len(analysis.bands) < 2:
        raise SystemExit(f"the demo run failed: {widget.status.text()}")
    return image, analysis.bands


def _synthetic_run(viewer, widget, size):
    from napari_consign import analysis as an

    shape = SIZES[size]
    prob = synthetic_map(shape, seed=len(size))
    image = viewer.add_image(prob, name=f"scan {size}", colormap="gray")
    bands = two_methods(prob)
    analysis = an.ImageAnalysis(shape=shape, spacing_zyx=(1.0, 1.0, 1.0))
    analysis.bands.update(bands)
    widget.show_analysis(image, analysis)
    return image, bands


def bench(size: str, repeats: int, viewer, widget, app, frames, uploads) -> list[dict]:
    from napari_consign.ui.layers import layer_key

    if size == "demo":
        image, bands = _demo_run(viewer, widget, app)
    else:
        image, bands = _synthetic_run(viewer, widget, size)
    shape = tuple(image.data.shape)
    key = layer_key(image)
    widget.set_image(image)
    while widget._prep_job is not None and widget._prep_job.running:  # codes made after a run
        app.processEvents()
        time.sleep(0.01)
    rows = []
    for nd in (2, 3):
        band_layers = [widget.band_layer(m, image) for m in bands]
        if nd == 3:
            for layer in band_layers:
                layer.visible = False
            viewer.dims.ndisplay = 2
            frames.settle()
            scan_first = frames.time(lambda: setattr(viewer.dims, "ndisplay", 3))
            viewer.dims.ndisplay = 2
            for layer in band_layers:
                layer.visible = True
            frames.settle()
            bands_first = frames.time(lambda: setattr(viewer.dims, "ndisplay", 3))
            volumes = [widget.volumes.layer((key, m)) for m in bands]
            for v in volumes:
                v.visible = False
            redraw = [frames.time(lambda: _nudge(viewer)) for _ in range(repeats)]
            for v in volumes:
                v.visible = True
            shown = [frames.time(lambda: _nudge(viewer)) for _ in range(repeats)]
        else:
            viewer.dims.ndisplay = 2
            viewer.dims.set_point(0, image.data_to_world((shape[0] // 2, 0, 0))[0])
            scan_first = bands_first = float("nan")
            redraw = [frames.time(lambda: _nudge(viewer)) for _ in range(repeats)]
            shown = redraw
        before = len(uploads)
        positions = [TICKS[i % len(TICKS)] for i in range(repeats)]
        ticks = [frames.time(lambda v=v: widget.alpha_slider.setValue(v)) for v in positions]
        rows.append(
            {
                "volume": f"{size} {'x'.join(map(str, shape))}",
                "view": f"{nd}D",
                "tick": statistics.median(ticks),
                "tick_max": max(ticks),
                "redraw": statistics.median(redraw),
                "redraw_bands": statistics.median(shown),
                "first_scan": scan_first,
                "first_bands": bands_first,
                "uploads": len(uploads) - before,
            }
        )
        print(_row(rows[-1]), flush=True)
    viewer.dims.ndisplay = 2
    for layer in list(viewer.layers):
        viewer.layers.remove(layer)
    return rows


HEADER = (
    "| volume | view | tick ms (median / max) | redraw ms | tick / redraw | "
    "redraw with bands ms | "
    "first 3D frame ms: scan / with bands | volume uploads in ticks |"
)


def _row(r: dict) -> str:
    first = "-" if np.isnan(r["first_scan"]) else f"{r['first_scan']:.0f} / {r['first_bands']:.0f}"
    ratio = r["tick"] / r["redraw"] if r["redraw"] else float("nan")
    return (
        f"| {r['volume']} | {r['view']} | {r['tick']:.0f} / {r['tick_max']:.0f} | "
        f"{r['redraw']:.0f} | {ratio:.2f} | {r['redraw_bands']:.0f} | {first} | "
        f"{r['uploads']} |"
    )


def _profile_2d_tick(viewer, widget, frames) -> None:
    import cProfile
    import pstats

    viewer.dims.ndisplay = 2
    prof = cProfile.Profile()
    prof.enable()
    for v in TICKS:
        frames.time(lambda v=v: widget.alpha_slider.setValue(v))
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(35)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="demo,brain,large")
    args = parser.parse_args(argv)
    import torch  # noqa: F401  (before Qt)

    display = _display()
    try:
        import napari
        import vispy.gloo.texture as texture
        from napari.qt import get_qapp

        uploads: list = []
        original = texture.Texture3D.set_data

        def spy(self, *a, **k):
            uploads.append(self.shape)
            return original(self, *a, **k)

        texture.Texture3D.set_data = spy
        app = get_qapp()
        viewer = napari.Viewer(show=True, title="bench_slider")
        viewer.window.resize(1366, 768)
        _dock, widget = viewer.window.add_plugin_dock_widget(
            "napari-consign", "Conformal uncertainty"
        )
        frames = Frames(viewer, app)
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, napari {napari.__version__}"
        )
        print(HEADER)
        print("|---|---|---|---|---|---|---|---|")
        for size in args.sizes.split(","):
            bench(size.strip(), args.repeats, viewer, widget, app, frames, uploads)
        viewer.close()
    finally:
        if display is not None:
            display.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
