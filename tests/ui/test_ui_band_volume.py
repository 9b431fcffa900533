"""3D band rendering: the code volume renders exactly the labels of Bands at every slider step,
and a slider tick in 3D uploads no volume texture."""

from __future__ import annotations

import numpy as np
import pytest

from napari_consign.conformal.bands import Bands
from napari_consign.ui.band_volume import MAX_CODES, band_codes

SLIDER = np.round(np.arange(1, 51) / 100, 2)


def _threshold_bands(seed: int, shape=(12, 40, 36), levels=None) -> Bands:
    rng = np.random.default_rng(seed)
    score = rng.random(shape) ** 3  # many low scores, a few high: bands cover part of it
    alphas = np.asarray(levels if levels is not None else np.arange(1, 51) / 100.0)
    tau_outer = np.quantile(score, 0.9 - alphas)  # outer shrinks as alpha grows
    tau_inner = np.quantile(score, 0.999 - alphas)  # raw inner grows as alpha grows
    return Bands.from_thresholds(score, alphas, tau_outer, tau_inner, method="crc")


def _mask_stack_bands(seed: int, shape=(6, 30, 28)) -> Bands:
    rng = np.random.default_rng(seed)
    alphas = np.array([0.05, 0.1, 0.15, 0.2, 0.3])
    outer = rng.random((len(alphas), *shape)) < 0.3  # not nested: CONSIGN's case
    inner = rng.random((len(alphas), *shape)) < 0.2
    return Bands.from_mask_stack(alphas, inner, outer, method="consign")


@pytest.mark.parametrize(
    "bands",
    [
        _threshold_bands(0),
        _threshold_bands(1, levels=[0.02, 0.05, 0.1, 0.2, 0.3, 0.5]),  # coarse grid: snapping
        _mask_stack_bands(2),
    ],
    ids=["threshold", "threshold-coarse-grid", "mask-stack"],
)
def test_codes_render_the_labels_of_bands_at_every_step(bands):
    codes = band_codes(bands, SLIDER)
    assert codes is not None and len(codes.table) <= MAX_CODES
    assert not codes.table[0].any()  # code 0: never in a band
    for step, alpha in enumerate(SLIDER):
        np.testing.assert_array_equal(codes.labels(step), bands.labels(alpha), err_msg=str(alpha))
    box = np.zeros(bands.shape, bool)
    box[tuple(slice(o, o + n) for o, n in zip(codes.offset, codes.codes.shape, strict=True))] = 1
    ever = np.any([bands.labels(a) > 0 for a in SLIDER], axis=0)
    assert not (ever & ~box).any()  # the crop keeps every band voxel


def test_threshold_bands_give_few_codes():
    """One score per voxel drives both bands: about two codes per grid level at most."""
    bands = _threshold_bands(3, shape=(20, 64, 64))
    codes = band_codes(bands, SLIDER)
    assert len(codes.table) <= 2 * len(bands.alphas) + 1
