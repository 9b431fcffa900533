import itertools

import numpy as np
import pytest

from napari_consign.conformal import CRC, DEFAULT_ALPHAS, Bands, ConformalInputError
from napari_consign.conformal.bands import INNER, OUTSIDE, RING, feasible_alphas
from napari_consign.synthetic import lesion_cases


@pytest.fixture(scope="module")
def fitted():
    d = lesion_cases(120, size=32, n_samples=4, seed=7)
    scores = d["samples"].mean(axis=1)
    return CRC().fit(scores[:100], d["masks"][:100]), scores[100:]


def test_masks_equal_direct_thresholding(fitted):
    crc, scores = fitted
    bands = crc.map_bands(scores[0])
    for alpha in bands.alphas:
        t = crc.thresholds(alpha)
        inner, outer = bands.masks(alpha)
        np.testing.assert_array_equal(outer, scores[0] >= t.outer)
        np.testing.assert_array_equal(inner, scores[0] >= t.inner)


def test_nested_in_alpha_and_inner_inside_outer(fitted):
    crc, scores = fitted
    bands = crc.map_bands(scores[1])
    previous_outer = None
    for alpha in bands.alphas:
        inner, outer = bands.masks(alpha)
        assert not np.any(inner & ~outer)
        if previous_outer is not None:
            assert not np.any(outer & ~previous_outer)  # outer shrinks as alpha grows
        previous_outer = outer
    raw = [bands.inner_start <= j for j in range(len(bands.alphas))]
    for a, b in itertools.pairwise(raw):
        assert not np.any(a & ~b)  # raw inner grows as alpha grows


def test_labels_consistent_with_masks(fitted):
    crc, scores = fitted
    bands = crc.map_bands(scores[2])
    for alpha in (0.05, 0.1, 0.3):
        inner, outer = bands.masks(alpha)
        labels = bands.labels(alpha)
        assert labels.dtype == np.uint8
        np.testing.assert_array_equal(labels == INNER, inner)
        np.testing.assert_array_equal(labels == RING, outer & ~inner)
        np.testing.assert_array_equal(labels == OUTSIDE, ~outer)


def test_bands_of_a_volume(fitted):
    crc, scores = fitted
    vol = np.stack(scores[:5])
    bands = crc.map_bands(vol)
    assert bands.shape == vol.shape
    np.testing.assert_array_equal(bands.masks(0.1)[1], vol >= crc.thresholds(0.1).outer)


def test_slider_snaps_to_grid(fitted):
    crc, scores = fitted
    bands = crc.map_bands(scores[0])
    assert bands.snap(0.104) == 0.1
    assert bands.snap(0.9) == bands.alphas[-1]


def test_grid_drops_infeasible_alphas():
    np.testing.assert_array_equal(feasible_alphas(19), DEFAULT_ALPHAS[4:])
    with pytest.raises(ConformalInputError, match=r"smallest feasible alpha is 0\.5"):
        feasible_alphas(1, [0.1, 0.2])
    with pytest.raises(ConformalInputError, match="increasing"):
        feasible_alphas(100, [0.2, 0.1])


def test_non_monotone_thresholds_become_a_conservative_envelope():
    score = np.linspace(0, 1, 101)
    alphas = np.array([0.1, 0.2, 0.3])
    tau_out = np.array([0.3, 0.5, 0.4])  # not non-decreasing
    tau_in = np.array([0.8, 0.9, 0.7])  # not non-increasing
    bands = Bands.from_thresholds(score, alphas, tau_out, tau_in)
    for j, a in enumerate(alphas):
        inner, outer = bands.masks(a)
        assert np.all(outer[score >= tau_out[j]])  # never smaller than asked
        assert not np.any(inner & (score < tau_in[j]))  # never larger than asked
    np.testing.assert_array_equal(bands.masks(0.2)[1], score >= 0.4)


def test_mask_stack_bands_round_trip_and_nesting():
    rng = np.random.default_rng(0)
    alphas = np.array([0.05, 0.1, 0.2])
    outer = rng.uniform(size=(3, 5, 7, 3)) > 0.4
    inner = rng.uniform(size=(3, 5, 7, 3)) > 0.6  # not inside outer on purpose
    bands = Bands.from_mask_stack(alphas, inner, outer, method="consign")
    assert bands.shape == (5, 7, 3)
    for j, a in enumerate(alphas):
        got_inner, got_outer = bands.masks(a)
        np.testing.assert_array_equal(got_outer, outer[j])
        np.testing.assert_array_equal(got_inner, inner[j] & outer[j])
        expected = outer[j].astype(np.uint8) + (inner[j] & outer[j])
        np.testing.assert_array_equal(bands.labels(a), expected)
    assert bands.snap(0.12) == 0.1
    with pytest.raises(ConformalInputError, match="one inner and one outer"):
        Bands.from_mask_stack(alphas, inner[:2], outer[:2])
