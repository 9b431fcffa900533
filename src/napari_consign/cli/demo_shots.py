"""The demo's pictures: screenshots of the napari window and canvas after the run.

``screenshots`` writes into ``out`` and returns, in order: ``window.png`` (the whole window,
widget included, as it is); then, with a caption (methods, alpha, slice, legend) and the ground
truth (when there is one) as a thin white outline on top, ``bands_<method>.png`` per method
(only its bands visible), and for a ``pair`` ``compare.png`` (grid mode, two titled panels) and
``disagreement.png`` (where the two outer bands differ). It changes the viewer's layers and
overlay as it goes.
"""

from __future__ import annotations

from pathlib import Path

SINGLE, PAIR = (700, 600), (700, 1200)  # screenshot sizes (height, width)


def _caption(methods: list[str], alpha: float, z: int, legend: str) -> str:
    names = " vs ".join(m.upper() for m in methods)
    return f"{names} · α = {alpha:.2f} · axial slice {z}, radiological\n{legend}"


def _legend_text(methods: list[str], disagreement: bool = False, truth: bool = True) -> str:
    if disagreement:
        a, b = (m.upper() for m in methods)
        white = " · white: ground truth" if truth else ""
        return f"cyan: {a} only · rose: {b} only\npear: both outer bands{white}"
    from ..palette import METHOD_COLOUR_NAMES

    parts = [f"{m.upper()}: {METHOD_COLOUR_NAMES.get(m, '')}" for m in methods]
    return "\n".join([*parts, *(["white outline: ground truth"] if truth else [])])


def screenshots(viewer, widget, image, truth, done, pair, out: Path, app, z: int) -> list[Path]:
    """Write the screenshots of methods ``done`` (and ``pair``) at slice ``z``; their paths."""
    files = [out / "window.png"]
    app.processEvents()
    viewer.screenshot(path=str(files[0]), canvas_only=False, flash=False)
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)  # napari >= 0.9
    overlay = overlays.text if overlays is not None else viewer.text_overlay
    overlay.visible = True
    overlay.font_size = 9
    overlay.color = "white"
    if truth is not None:
        truth.visible = True  # the ground truth as a thin white outline
        truth.contour = 1
        truth.opacity = 1.0
        truth.colormap = {0: "transparent", None: (1.0, 1.0, 1.0, 1.0)}
        layers = viewer.layers
        layers.move(layers.index(truth), len(layers))  # the outline on top of the bands

    def show_truth(visible: bool) -> None:
        if truth is not None:
            truth.visible = visible

    def shot(name: str, size: tuple[int, int], methods: list[str], disagreement=False) -> None:
        legend = _legend_text(methods, disagreement, truth is not None)
        overlay.text = _caption(methods, widget.alpha, z, legend)
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
        show_truth(False)  # the grid shows two panels; the caption names both methods
        shot("compare.png", PAIR, list(pair))
        widget.set_compare(False)
        show_truth(True)
        for layer in bands.values():
            layer.visible = False
        widget.set_disagreement(True, *pair)
        shot("disagreement.png", SINGLE, list(pair), disagreement=True)
        widget.set_disagreement(False)
        for layer in bands.values():
            layer.visible = True
    return files
