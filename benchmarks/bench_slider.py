"""Alpha-slider latency: labels from Bands + layer data assignment + napari refresh.

Two volumes: the 3D demo scan (80 x 112 x 96; MC mean of the bundled model with N_s samples,
shipped CRC bundle when present) and a synthetic 300 x 512 x 512 probability map with a CRC
fitted on synthetic units. For each, in a shown napari viewer (virtual display when there is
no DISPLAY), per slider tick:

* ``numpy labels``: ``Bands.labels(alpha)`` for the whole volume (no napari);
* ``2D lazy``: assign a ``BandsView`` in contour mode (the widget's way: compares only the
  slice on screen and draws the outer band as its boundary, computed on that slice) and let
  napari refresh and draw;
* ``2D eager``: assign ``Bands.labels(alpha)`` (whole volume) and refresh;
* ``3D lazy`` / ``3D eager``: the same with ``dims.ndisplay = 3`` (napari needs the whole
  volume, filled, and uploads a 3D texture; the widget throttles these while dragging).

Prints a table of median and worst times in ms. Run:
``python benchmarks/bench_slider.py [--repeats 9] [--quick]`` (``--quick``: synthetic map for
the demo volume too, no model sampling).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.15, 0.25, 0.4, 0.08)


def _display():
    if os.environ.get("DISPLAY"):
        return None
    from pyvirtualdisplay import Display

    d = Display(visible=False, size=(1400, 1000), color_depth=24)
    d.start()
    return d


def synthetic_crc(n: int = 200):
    from napari_consign.conformal import CRC
    from napari_consign.synthetic import lesion_cases

    d = lesion_cases(n, size=48, n_samples=8, seed=0)
    return CRC().fit(d["samples"].mean(axis=1), d["masks"])


def synthetic_map(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A smooth probability map with blob-like structures, float32, built slab by slab."""
    rng = np.random.default_rng(seed)
    z, y, x = (np.linspace(0, 1, s, dtype=np.float32) for s in shape)
    out = np.empty(shape, np.float32)
    waves = rng.uniform(2, 9, size=(3, 3)).astype(np.float32)
    phase = rng.uniform(0, 6.3, size=3).astype(np.float32)
    fy = sum(np.sin(waves[1, i] * y + phase[i]) for i in range(3))
    fx = sum(np.sin(waves[2, i] * x + phase[i]) for i in range(3))
    plane = fy[:, None] * fx[None, :]
    for k in range(shape[0]):
        fz = float(sum(np.sin(waves[0, i] * z[k] + phase[i]) for i in range(3)))
        logit = 1.5 * plane * fz - 1.0
        out[k] = 1.0 / (1.0 + np.exp(-logit))
    return out


def demo_volume(quick: bool, n_samples: int):
    """(probability map, CRC, description) for the demo scan."""
    from napari_consign._sample_data import sample_data_path
    from napari_consign.io import read_volume

    vol = read_volume(sample_data_path("demo_scan.nii.gz")).array
    if quick:
        return synthetic_map(vol.shape, seed=1), synthetic_crc(), "demo shape, synthetic map"
    from napari_consign.analysis import ModelSpec, build_sampler, bundled_bundle_path
    from napari_consign.calibration import load_bundle

    sampler = build_sampler(ModelSpec(n_samples=n_samples, device="auto"))
    mean = sampler.run(vol)["mean"]
    path = bundled_bundle_path("crc")
    if path.is_file():
        crc, how = load_bundle(path, model_id=sampler.identity), "shipped CRC bundle"
    else:
        crc, how = synthetic_crc(), "synthetic CRC"
    return mean, crc, f"demo scan, MC mean N_s={n_samples}, {how}"


def timed(fn, repeats: int) -> list[float]:
    out = []
    for i in range(repeats):
        a = ALPHAS[i % len(ALPHAS)]
        t = time.perf_counter()
        fn(a)
        out.append((time.perf_counter() - t) * 1000)
    return out


def bench_volume(viewer, app, prob: np.ndarray, crc, repeats: int, repeats_3d: int) -> dict:
    from napari_consign.ui.layers import RING_CONTOUR, BandsView, band_colormap

    t = time.perf_counter()
    bands = crc.bands(prob)
    build_ms = (time.perf_counter() - t) * 1000
    viewer.layers.clear()
    viewer.dims.ndisplay = 2
    viewer.add_image(prob, name="p", contrast_limits=(0, 1))
    view = BandsView(bands, 0.1, ring=RING_CONTOUR)
    layer = viewer.add_labels(view, name="bands", colormap=band_colormap("crc", solid_ring=True))
    viewer.dims.set_point(0, prob.shape[0] // 2)
    viewer.reset_view()
    app.processEvents()

    def lazy(a):
        layer.data = BandsView(bands, a, ring=RING_CONTOUR)
        app.processEvents()

    def eager(a):
        layer.data = bands.labels(a)
        app.processEvents()

    rows = {"build Bands (once)": [build_ms]}
    rows["numpy labels"] = timed(lambda a: bands.labels(a), repeats)

    def redraw(a):
        layer.refresh()
        app.processEvents()

    rows["2D redraw only (baseline)"] = timed(redraw, repeats)
    lazy(0.12)
    rows["2D lazy"] = timed(lazy, repeats)
    eager(0.12)
    rows["2D eager"] = timed(eager, repeats)
    viewer.dims.ndisplay = 3
    app.processEvents()
    lazy(0.12)
    rows["3D lazy"] = timed(lazy, repeats_3d)
    rows["3D eager"] = timed(eager, repeats_3d)
    viewer.dims.ndisplay = 2
    viewer.layers.clear()
    app.processEvents()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=9, help="ticks per 2D measurement")
    p.add_argument("--repeats-3d", type=int, default=3, help="ticks per 3D measurement")
    p.add_argument("--n-samples", type=int, default=4, help="MC samples for the demo scan")
    p.add_argument("--quick", action="store_true", help="no model: synthetic demo-sized map")
    p.add_argument("--big", default="300,512,512", help="shape of the large volume (z,y,x)")
    args = p.parse_args(argv)

    import torch  # before Qt (pytorch#11326)

    display = _display()
    try:
        import napari
        from napari.qt import get_qapp

        app = get_qapp()
        viewer = napari.Viewer(show=True, title="bench_slider")
        viewer.window.resize(1200, 900)
        results = []
        prob, crc, desc = demo_volume(args.quick, args.n_samples)
        results.append(
            (
                f"{desc} {prob.shape}",
                bench_volume(viewer, app, prob, crc, args.repeats, args.repeats_3d),
            )
        )
        del prob
        shape = tuple(int(v) for v in args.big.split(","))
        big = synthetic_map(shape)
        results.append(
            (
                f"synthetic map {shape}, synthetic CRC",
                bench_volume(viewer, app, big, synthetic_crc(), args.repeats, args.repeats_3d),
            )
        )
        viewer.close()
    finally:
        if display is not None:
            display.stop()

    print(
        f"\nslider latency in ms (median / worst); torch threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} CPUs"
    )
    for desc, rows in results:
        print(f"\n{desc}")
        print(f"  {'step':26s} {'median':>9s} {'worst':>9s} {'n':>3s}")
        for name, times in rows.items():
            print(f"  {name:26s} {statistics.median(times):9.1f} {max(times):9.1f} {len(times):3d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
