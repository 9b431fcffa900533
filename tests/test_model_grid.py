"""Resampling to the model's spacing and back, the body mask, and bands bounded by it."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from napari_consign._sample_data import sample_data_path
from napari_consign.body_mask import body_mask, restrict_bands, restrict_scores
from napari_consign.conformal import CRC
from napari_consign.conformal.bands import Bands
from napari_consign.resample import map_bands, plan_grid

FULL = ndi.generate_binary_structure(3, 3)  # "within one voxel" includes diagonals


def _blob(shape, seed=0) -> np.ndarray:
    """An irregular 3D mask: two overlapping ellipsoids with a rough boundary."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    c = np.array(shape) / 2
    r1 = ((zz - c[0]) / 9) ** 2 + ((yy - c[1]) / 14) ** 2 + ((xx - c[2]) / 7) ** 2
    r2 = ((zz - c[0] - 5) / 5) ** 2 + ((yy - c[1] + 9) / 6) ** 2 + ((xx - c[2] - 6) / 8) ** 2
    rough = ndi.gaussian_filter(rng.standard_normal(shape), 2.0) * 0.6
    return (np.minimum(r1, r2) + rough) < 1.0


def _boundary_shell(mask: np.ndarray) -> np.ndarray:
    """Voxels within one voxel of the mask's boundary (either side)."""
    return ndi.binary_dilation(mask, FULL) & ~ndi.binary_erosion(mask, FULL)


@pytest.mark.parametrize(
    ("spacing", "labels"),
    [((1.0, 1.0, 1.0), True), ((1.0, 1.0, 1.0), False), ((1.2, 0.9, 0.9), False)],
)
def test_mask_round_trip_lands_where_it_started(spacing, labels):
    mask = _blob((40, 56, 48))
    grid = plan_grid(mask.shape, spacing, (2.0, 2.0, 2.0))
    assert not grid.identity
    down = (
        grid.to_model_labels(mask).astype(np.float32)
        if labels
        else grid.to_model(mask.astype(np.float32))
    )
    assert down.shape == grid.model_shape
    back = grid.to_source(down) >= 0.5
    assert back.shape == mask.shape
    moved = back ^ mask
    assert moved.any()  # a 2 mm grid cannot hold every 1 mm detail...
    assert not (moved & ~_boundary_shell(mask)).any()  # ...but nothing moves beyond one voxel
    # the centre of mass stays put: linear resampling is unbiased; nearest neighbour at an even
    # ratio must pick one of two source voxels per model voxel, a half-voxel shift at most
    shift = np.subtract(ndi.center_of_mass(back), ndi.center_of_mass(mask))
    assert np.abs(shift).max() < (0.75 if labels else 0.2)


def test_same_spacing_is_the_identity():
    vol = np.random.default_rng(0).uniform(size=(6, 7, 8)).astype(np.float32)
    grid = plan_grid(vol.shape, (2.0, 2.0, 2.0), (2.0, 2.0, 2.0))
    assert grid.identity
    assert grid.to_model(vol) is not None and np.array_equal(grid.to_model(vol), vol)


def test_bands_go_back_to_the_source_grid_nested():
    mask = _blob((30, 40, 36), seed=3)
    score = ndi.gaussian_filter(mask.astype(np.float32), 1.5)
    grid = plan_grid(mask.shape, (1.0, 1.0, 1.0), (2.0, 2.0, 2.0))
    model_score = grid.to_model(score)
    alphas = np.array([0.1, 0.2, 0.3])
    b = Bands.from_thresholds(model_score, alphas, [0.2, 0.3, 0.4], [0.8, 0.7, 0.6], "crc")
    back = map_bands(b, grid.to_source)
    assert back.shape == mask.shape
    for a, tau in zip(alphas, [0.2, 0.3, 0.4], strict=True):
        inner, outer = back.masks(a)
        assert not (inner & ~outer).any()
        # the band at source resolution matches thresholding the source score, within a voxel
        direct = score >= tau
        assert not ((outer ^ direct) & ~_boundary_shell(direct)).any()
    stacked = Bands.from_mask_stack(
        alphas, np.stack([b.masks(a)[0] for a in alphas]), np.stack([b.masks(a)[1] for a in alphas])
    )
    moved = map_bands(stacked, grid.to_source)
    for a in alphas:  # per-level masks and level maps move alike, within a voxel
        ref = back.masks(a)[1]
        assert not ((moved.masks(a)[1] ^ ref) & ~_boundary_shell(ref)).any()


@pytest.fixture(scope="module")
def demo():
    scan = sitk.GetArrayFromImage(sitk.ReadImage(str(sample_data_path("demo_scan.nii.gz"))))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(sample_data_path("demo_mask.nii.gz"))))
    return scan, truth > 0


def test_body_mask_holds_the_head_and_every_lesion_of_the_demo(demo):
    scan, truth = demo
    body = body_mask(scan)
    assert not (truth & ~body).any()
    assert 0.15 < body.mean() < 0.5  # the head, not the whole box
    assert not body[0, 0, 0] and not body[-1, -1, -1]  # the corners are air


def test_body_mask_of_2d_slices_with_several_parts():
    img = np.zeros((60, 60), np.float32)
    img[10:30, 5:25] = 1.0  # one lobe
    img[35:55, 30:58] = 1.0  # another, not touching
    img[40:45, 40:45] = 0.1  # a dark hole inside
    img += np.random.default_rng(0).normal(0, 0.02, img.shape).astype(np.float32)
    body = body_mask(np.abs(img))
    assert body[20, 15] and body[45, 45] and body[42, 42]  # both parts, hole filled
    assert not body[2, 50] and not body[58, 2]


def test_constant_image_has_no_body():
    assert not body_mask(np.ones((4, 5, 6))).any()


def test_no_band_voxel_outside_the_body(demo):
    scan, truth = demo
    body = body_mask(scan)
    # a deliberately bad score map: high everywhere, including the air around the head
    rng = np.random.default_rng(0)
    score = np.clip(0.3 + 0.6 * truth + 0.2 * rng.standard_normal(scan.shape), 0, 1)
    crc = CRC().fit(score[::4], truth[::4].astype(np.uint8))
    b = crc.map_bands(score.astype(np.float32))
    assert (b.masks(0.1)[1] & ~body).any()  # without the rule the outer band is in the air
    for bands in (restrict_bands(b, body), crc.map_bands(restrict_scores(score, body))):
        for a in bands.alphas:
            inner, outer = bands.masks(a)
            assert not (outer & ~body).any() and not (inner & ~body).any()
    pairs = [b.masks(a) for a in b.alphas[:2]]
    stacked = Bands.from_mask_stack(
        b.alphas[:2], np.stack([i for i, _ in pairs]), np.stack([o for _, o in pairs])
    )
    for a in stacked.alphas:
        assert not (restrict_bands(stacked, body).masks(a)[1] & ~body).any()
