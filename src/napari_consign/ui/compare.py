"""Two methods side by side (napari grid mode) and where they disagree.

Side by side: grid mode with shape (1, 2): the layer list starts with
``[image, bands A, image (compare), bands B]`` (``stride = 2``), the second image layer shares
the first's array (no copy) and its transform; grid viewboxes share one camera and one set of
dims, so zoom, pan and slice stay linked. Each panel is titled with its band layer's name
(napari's per-layer name overlay: "scan · CRC · bands"). Contrast and display settings of the
two image layers and the two band layers are linked with ``napari.experimental.link_layers``.
Every other layer is hidden while comparing (napari's grid gives each visible stride group a
viewbox).

Disagreement: one Labels layer comparing the two methods' outer bands (1 A only, 2 B only,
3 both), lazily like the band layers. Side by side, a second layer with the same data goes into
the second panel (``stride = 3``), so both panels show it.

Switching off restores the previous layout exactly: grid settings, layer order, visibility,
and removes the layers added here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .band_views import DisagreementView
from .layer_geometry import transform_kwargs
from .layers import (
    KIND_KEY,
    disagreement_colormap,
    disagreement_layer_name,
    layer_key,
    same_layer,
)


def grid_of(viewer: Any) -> Any:
    """The grid model: ``viewer.canvas.grid`` in napari >= 0.9, ``viewer.grid`` before."""
    return getattr(viewer, "canvas", viewer).grid


@dataclass
class _Saved:
    enabled: bool
    stride: int
    shape: tuple
    order: list
    visible: dict = field(default_factory=dict)


class CompareView:
    """Side-by-side and disagreement views for one viewer."""

    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer
        self._saved: _Saved | None = None
        self.image_copy: Any = None
        self.pair: tuple[Any, Any] | None = None  # the two band layers compared
        self._linked: list[list[Any]] = []
        self._image: Any = None
        self._titles: dict = {}
        self.disagreement: Any = None
        self.disagreement_copy: Any = None

    # ------------------------------------------------------------------ side by side
    @property
    def enabled(self) -> bool:
        return self._saved is not None

    def enable(self, image_layer: Any, bands_a: Any, bands_b: Any) -> None:
        """Show ``bands_a`` and ``bands_b`` (band layers of ``image_layer``) side by side."""
        if self.enabled:
            self.disable()
        layers = self.viewer.layers
        grid = grid_of(self.viewer)
        self._saved = _Saved(
            enabled=bool(grid.enabled),
            stride=int(grid.stride),
            shape=tuple(grid.shape),
            order=list(layers),
            visible={layer_key(lyr): bool(lyr.visible) for lyr in layers},
        )
        kw = transform_kwargs(image_layer)
        kw["metadata"][KIND_KEY] = "compare-image"
        self.image_copy = self.viewer.add_image(
            image_layer.data,  # the same array: no copy
            name=f"{image_layer.name} (compare)",
            colormap=image_layer.colormap,
            contrast_limits=tuple(image_layer.contrast_limits),
            gamma=image_layer.gamma,
            **kw,
        )
        self.pair = (bands_a, bands_b)
        self._image = image_layer
        self._titles = {
            layer_key(lyr): bool(lyr.name_overlay.visible) for lyr in (bands_a, bands_b)
        }
        for band_layer in (bands_a, bands_b):  # each panel titled with its method
            band_layer.name_overlay.visible = True
        self._link([image_layer, self.image_copy], ("contrast_limits", "gamma", "opacity"))
        self._link([bands_a, bands_b], ("opacity", "contour"))
        if self.disagreement is not None:
            self._add_disagreement_copy()
        self._relayout()
        grid.shape = (1, 2)
        grid.enabled = True

    def _panels(self) -> list[list[Any]]:
        """The layers of each grid panel, bottom to top: scan, bands, disagreement."""
        a, b = self.pair
        left, right = [self._image, a], [self.image_copy, b]
        if self.disagreement is not None and self.disagreement_copy is not None:
            left.append(self.disagreement)
            right.append(self.disagreement_copy)
        return [left, right]

    def _relayout(self) -> None:
        """Order the layers panel by panel, hide the rest, and set the grid stride."""
        layers = self.viewer.layers
        panels = self._panels()
        wanted = [lyr for panel in panels for lyr in panel]
        for target, layer in enumerate(wanted):
            current = layers.index(layer)
            if current != target:
                layers.move(current, target)
        for layer in layers:
            layer.visible = any(same_layer(layer, w) for w in wanted)
        grid_of(self.viewer).stride = len(panels[0])

    def _add_disagreement_copy(self) -> None:
        """The disagreement layer again, for the second panel (same lazy data, no copy)."""
        source = self.disagreement
        kw = transform_kwargs(source)
        kw["metadata"][KIND_KEY] = "disagreement-copy"
        self.disagreement_copy = self.viewer.add_labels(
            source.data,
            name=f"{source.name} (compare)",
            colormap=disagreement_colormap(),
            opacity=source.opacity,
            **kw,
        )

    def _link(self, group: list[Any], attrs: tuple[str, ...]) -> None:
        from napari.experimental import link_layers

        link_layers(group, attrs)
        self._linked.append(group)

    def disable(self) -> None:
        """Back to the layout before :meth:`enable`."""
        if self._saved is None:
            return
        from napari.experimental import unlink_layers

        saved, self._saved = self._saved, None
        for group in self._linked:
            try:
                unlink_layers(group)
            except (KeyError, ValueError):  # a layer of the group was removed meanwhile
                pass
        self._linked = []
        layers = self.viewer.layers
        for band_layer in self.pair or ():
            if layer_key(band_layer) in self._titles:
                band_layer.name_overlay.visible = self._titles[layer_key(band_layer)]
        copies = [self.image_copy, self.disagreement_copy]
        self.image_copy = self.disagreement_copy = None
        for copy in copies:
            if copy is not None and copy in layers:
                layers.remove(copy)
        self.pair = None
        self._image = None
        grid = grid_of(self.viewer)
        grid.enabled = saved.enabled
        grid.stride = saved.stride
        grid.shape = saved.shape
        present = [lyr for lyr in saved.order if lyr in layers]
        for target, layer in enumerate(present):
            current = layers.index(layer)
            if current != target:
                layers.move(current, target)
        for layer in layers:
            if layer_key(layer) in saved.visible:
                layer.visible = saved.visible[layer_key(layer)]

    def forget(self, layer: Any) -> None:
        """A layer was removed by the user: leave compare mode if it was part of it."""
        in_pair = self.pair is not None and any(same_layer(layer, p) for p in self.pair)
        if self.enabled and (same_layer(layer, self.image_copy) or in_pair):
            if same_layer(layer, self.image_copy):
                self.image_copy = None
            self.disable()
        if same_layer(layer, self.disagreement_copy):
            self.disagreement_copy = None
        if same_layer(layer, self.disagreement):
            self.disagreement = None

    # ------------------------------------------------------------------ disagreement
    def show_disagreement(
        self,
        image_layer: Any,
        a: str,
        bands_a: Any,
        alpha_a: float,
        b: str,
        bands_b: Any,
        alpha_b: float,
    ) -> Any:
        """Add (or update) the disagreement layer of the outer bands of ``a`` and ``b``."""
        squeeze = image_layer.ndim == 2
        view = DisagreementView(bands_a, alpha_a, bands_b, alpha_b, squeeze_lead=squeeze)
        name = disagreement_layer_name(image_layer.name, a, b)
        layer = self.disagreement
        if layer is not None and layer in self.viewer.layers:
            if layer.metadata.get("napari_consign_pair") == [a, b]:
                layer.data = view
                return layer
            self.hide_disagreement()
        kw = transform_kwargs(image_layer)
        kw["metadata"][KIND_KEY] = "disagreement"
        kw["metadata"]["napari_consign_pair"] = [a, b]
        kw["metadata"]["napari_consign_values"] = {
            "1": f"{a} only",
            "2": f"{b} only",
            "3": "both",
        }
        self.disagreement = self.viewer.add_labels(
            view, name=name, colormap=disagreement_colormap(), opacity=0.7, **kw
        )
        if self.enabled:  # side by side: every panel shows the disagreement
            self._add_disagreement_copy()
            self._relayout()
        return self.disagreement

    def update_disagreement(self, bands_a: Any, alpha_a: float, bands_b: Any, alpha_b: float):
        layer = self.disagreement
        if layer is None or layer not in self.viewer.layers:
            return
        squeeze = layer.ndim == 2 and len(bands_a.shape) == 3
        view = DisagreementView(bands_a, alpha_a, bands_b, alpha_b, squeeze_lead=squeeze)
        for target in (layer, self.disagreement_copy):
            if target is not None and target in self.viewer.layers:
                target.data = view

    def hide_disagreement(self) -> None:
        layers = [self.disagreement, self.disagreement_copy]
        self.disagreement = self.disagreement_copy = None
        for layer in layers:
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        if self.enabled:
            self._relayout()
