"""The band layers of a viewer: one labels layer per (scan, method), kept in step with alpha.

:class:`BandLayers` adds a method's band layer when its first bands arrive (the preview slice,
then the whole volume), points every band layer at its ``Bands`` at the workspace's alpha (no
recomputation: lazy views from :mod:`.layers`), swaps to the 3D code volumes of
:mod:`.band_volume` in 3D, and removes what a cancelled run added with the canvas's GL context
current (:mod:`.gl_safety`). Layers are keyed by ``(layer_key(scan), method)``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from .. import analysis as an
from ..workspace import SLIDER_ALPHAS, RunState, Workspace
from ._workers import Job, start_job
from .band_views import RING_CONTOUR, RING_FILL, BandsView, PreviewView, _LevelCache
from .band_volume import BandCodes, VolumeBands, step_colormap, volume_layer_kwargs
from .gl_safety import remove_layers
from .layer_geometry import data_to_world_matrix
from .layers import (
    add_band_layer,
    band_layer_name,
    band_metadata,
    layer_key,
    same_layer,
    solid_ring,
    style_band_layer,
    update_band_metadata,
)

Key = tuple[Hashable, str]


class BandLayers:
    """The band layers (2D labels and 3D code volumes) of the scans a workspace analysed."""

    def __init__(self, viewer: Any, workspace: Workspace, compare: Any, anchor: Any) -> None:
        self.viewer = viewer
        self.workspace = workspace
        self.compare = compare  # the CompareView, told about band layers removed here
        self.anchor = anchor  # a widget in the viewer's window (GL-safe removals)
        self.volumes = VolumeBands(viewer, SLIDER_ALPHAS)
        self.images: dict[Hashable, Any] = {}  # scan key -> its image layer
        self._layers: dict[Key, Any] = {}
        self._views: dict[Key, Any] = {}  # the data we gave each band layer
        self._level_cache = _LevelCache(size=4)
        self.prep_job: Job | None = None  # 3D code volumes computed after a run

    @property
    def ring_mode(self) -> str:
        return RING_FILL if self.workspace.ring_fill else RING_CONTOUR

    def layer(self, image: Any, method: str) -> Any:
        """The band layer of ``method`` for ``image`` (None when there is none)."""
        return None if image is None else self._layers.get((layer_key(image), method))

    def keys(self) -> list[Key]:
        return list(self._layers)

    def _analysis_for(self, key: Hashable, method: str) -> an.ImageAnalysis | None:
        """The analysis whose bands ``key``'s layer of ``method`` shows: the running one while
        it has bands or a preview of that method, else the finished one."""
        run = self.workspace.run
        if run is not None and layer_key(run.image) == key:
            if method in run.analysis.bands or method in run.analysis.preview:
                return run.analysis
        return self.workspace.analysis(key)

    # ------------------------------------------------------------------ showing
    def _view(self, image: Any, analysis: an.ImageAnalysis, method: str) -> Any:
        squeeze, ring, alpha = image.ndim == 2, self.ring_mode, self.workspace.alpha
        if method in analysis.bands:
            bands = analysis.bands[method]
            return BandsView(bands, alpha, squeeze, self._level_cache, ring=ring)
        z, b = analysis.preview[method]
        return PreviewView(analysis.shape, z, b, alpha, squeeze, ring=ring)

    def show(self, image: Any, analysis: an.ImageAnalysis, method: str, run=None) -> None:
        """Show ``method``'s bands (or preview slice) of ``analysis`` on ``image``; a layer
        added for ``run`` is recorded in ``run.created`` (removed if the run is cancelled)."""
        if method not in analysis.bands and method not in analysis.preview:
            return
        lid = layer_key(image)
        self.images[lid] = image
        data = self._view(image, analysis, method)
        meta = band_metadata(image, method, data.bands, self.workspace.alpha, kind="bands")
        layer = self._layers.get((lid, method))
        if layer is None or layer not in self.viewer.layers:
            solid = solid_ring(self.ring_mode, self.viewer.dims.ndisplay)
            layer = add_band_layer(self.viewer, image, method, data, meta, solid_ring=solid)
            self._layers[(lid, method)] = layer
            if run is not None:
                run.created.add(method)
        else:
            layer.metadata = meta
            layer.data = data
        self._views[(lid, method)] = data

    def apply_alpha(self) -> None:
        """Point every band layer at its Bands at the current alpha (no recomputation).

        In 3D the labels layers that hide behind a code volume are left alone (they are
        brought up to date when the view returns to 2D); the volumes get a new colormap."""
        alpha, three_d = self.workspace.alpha, self.viewer.dims.ndisplay == 3
        self.volumes.set_alpha(alpha)
        for (lid, method), layer in list(self._layers.items()):
            if three_d and self.volumes.layer((lid, method)) is not None:
                continue
            image = self.images.get(lid)
            if image is None or layer not in self.viewer.layers:
                continue
            analysis = self._analysis_for(lid, method)
            if analysis is None or (
                method not in analysis.bands and method not in analysis.preview
            ):
                continue
            current = self._views.get((lid, method))  # ours, not napari's proxy of it
            if (
                isinstance(current, BandsView)
                and method in analysis.bands
                and current.bands is analysis.bands[method]
                and current.ring == self.ring_mode
            ):
                # the same bands at another alpha: retarget the view and re-slice the plane on
                # screen (assigning new data costs napari a dims update: ~40 ms a layer); the
                # extent is unchanged, and the thumbnail waits for the slider to settle
                current.retarget(alpha)
                layer.refresh(thumbnail=False, highlight=False, extent=False)
                data = current
            else:
                data = self._view(image, analysis, method)
                layer.data = data
                self._views[(lid, method)] = data
            update_band_metadata(layer, data.bands, alpha)

    def refresh_thumbnails(self) -> None:
        """Bring the band layers' thumbnails (in the layer list) up to the current alpha; the
        slider's ticks leave them behind, so a drag does not repaint the layer list."""
        for layer in self._layers.values():
            if layer in self.viewer.layers and layer.visible:
                layer.refresh(data_displayed=False, highlight=False, extent=False)

    def restyle(self) -> None:
        """Style every band layer for the ring mode and 2D/3D; in 3D show the code volumes."""
        nd = self.viewer.dims.ndisplay
        for layer in self._layers.values():
            if layer in self.viewer.layers:
                style_band_layer(layer, self.ring_mode, nd)
        self.sync_volumes()
        if nd == 2:
            self.apply_alpha()  # the labels layers were left behind while in 3D

    # ------------------------------------------------------------------ 3D code volumes
    def sync_volumes(self) -> None:
        """3D: each finished method's bands as a code volume (one upload); 2D: labels."""
        entries = {}
        run = self.workspace.run
        for (lid, method), layer in self._layers.items():
            image, analysis = self.images.get(lid), self.workspace.analysis(lid)
            if image is None or layer not in self.viewer.layers:
                continue
            running = run is not None and same_layer(run.image, image)
            bands = None if running or analysis is None else analysis.bands.get(method)
            entries[(lid, method)] = (layer, bands, method, image)
        three_d = self.viewer.dims.ndisplay == 3
        self.volumes.sync(entries, self.workspace.alpha, three_d, self._add_volume_layer)

    def _add_volume_layer(self, codes: BandCodes, method: str, image: Any, key: Any) -> Any:
        alpha = self.workspace.alpha
        bands = self.workspace.analysis(key[0]).bands[method]
        step = self.volumes.step_of(alpha)
        name = f"napari-consign {method} step {step} #{id(codes)}"
        return self.viewer.add_image(
            codes.codes,
            name=f"{band_layer_name(image.name, method)} (3D)",
            colormap=step_colormap(method, codes.table[:, step], name),
            metadata=band_metadata(image, method, bands, alpha, kind="bands-3d"),
            **volume_layer_kwargs(codes, data_to_world_matrix(image)),
        )

    def prepare_volumes(self) -> None:
        """Compute the 3D code volumes in a worker now (2D), so the first 3D frame only
        uploads them."""
        analyses = self.workspace.analyses().values()
        bands = [b for analysis in analyses for b in analysis.bands.values()]
        self.volumes.drop_prepared(bands)
        if not bands or (self.prep_job is not None and self.prep_job.running):
            return
        self.prep_job = start_job(lambda _cancel: self.volumes.prepare(bands))

    # ------------------------------------------------------------------ removing
    def rollback(self, run: RunState) -> None:
        """Remove what a failed or cancelled run added; restore layers it previewed into."""
        lid = layer_key(run.image)
        self.remove([(lid, method) for method in run.created])
        run.created.clear()
        prev = run.previous
        if prev is not None and run.image in self.viewer.layers:
            for method in prev.bands:
                layer = self._layers.get((lid, method))
                if layer is not None and layer in self.viewer.layers:
                    layer.data = self._view(run.image, prev, method)

    def remove(self, keys: list[Key]) -> None:
        """Remove the band layers of ``keys`` (leaving compare mode if they are compared)."""
        for key in keys:
            self.volumes.remove(key)
            self._views.pop(key, None)
        layers = [self._layers.pop(key, None) for key in keys]
        layers = [lyr for lyr in layers if lyr is not None]
        for layer in layers:
            self.compare.forget(layer)
        remove_layers(self.viewer, layers, self.anchor)

    def forget(self, layer: Any) -> None:
        """``layer`` left the viewer: drop it if it is a band layer, or its scan's layers."""
        self.volumes.forget(layer)
        for key, lyr in list(self._layers.items()):
            if same_layer(lyr, layer):
                del self._layers[key]
                self._views.pop(key, None)
                self.volumes.remove(key)
        lid = layer_key(layer)
        if self.images.pop(lid, None) is not None:
            self.workspace.forget(lid)
            for key in [k for k in self._layers if k[0] == lid]:
                self._layers.pop(key, None)
