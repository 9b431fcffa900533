"""Geometry: reorientation inverse, napari transform, metadata round trip (no files needed)."""

from __future__ import annotations

import copy
import itertools
import json

import numpy as np
import pytest
from io_helpers import assert_layer_matches_sitk, rotation

from napari_consign.io import Geometry, Grid, attach_geometry, geometry_from_metadata, layer_kwargs
from napari_consign.io.geometry import GEOMETRY_KEY, oblique_degrees, orientation_code

sitk = pytest.importorskip("SimpleITK")


def signed_permutations():
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            m[list(perm), range(3)] = signs
            yield m


def _image(rng, direction, size=(5, 4, 3)):
    img = sitk.GetImageFromArray(rng.integers(0, 1000, size[::-1]).astype(np.int16))
    img.SetSpacing((0.7, 1.1, 2.3))
    img.SetOrigin((12.5, -40.25, 7.0))
    img.SetDirection(np.asarray(direction).ravel().tolist())
    return img


def test_to_source_array_inverts_dicomorient_for_all_48_axis_orders(rng):
    tilt = rotation(0.05, -0.03, 0.08)  # a small oblique residual on top of each permutation
    for m in signed_permutations():
        src = _image(rng, tilt @ m)
        loaded = sitk.DICOMOrient(src, "LPS")
        geom = Geometry(
            grid=Grid.from_image(loaded),
            source=Grid.from_image(src),
            orientation=sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(
                src.GetDirection()
            ),
        )
        assert geom.orientation == orientation_code(src.GetDirection())
        back = geom.to_source_array(sitk.GetArrayFromImage(loaded))
        np.testing.assert_array_equal(back, sitk.GetArrayFromImage(src))
        # and sitk.DICOMOrient back to the recorded code gives the same grid
        again = sitk.DICOMOrient(loaded, geom.orientation)
        assert again.GetSize() == src.GetSize()
        np.testing.assert_allclose(again.GetOrigin(), src.GetOrigin(), atol=1e-9)
        np.testing.assert_allclose(again.GetDirection(), src.GetDirection(), atol=1e-12)


@pytest.mark.parametrize("flip", [False, True])
def test_napari_layer_data_to_world_is_exact_for_oblique_permuted_directions(rng, flip):
    from napari.layers import Image

    d = rotation(0.3, -0.5, 1.1) @ np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], float)
    if flip:
        d = d @ np.diag([1, -1, 1])  # determinant -1: napari folds it into a negative scale
    img = _image(rng, d, size=(6, 5, 4))
    grid = Grid.from_image(img)
    geom = Geometry(grid=grid, source=grid, orientation=orientation_code(d))
    layer = Image(sitk.GetArrayFromImage(img), **layer_kwargs(geom, name="x"))
    assert_layer_matches_sitk(layer, img)
    np.testing.assert_allclose(
        geom.affine_zyx() @ [3, 2, 1, 1], [*layer.data_to_world((3, 2, 1)), 1]
    )
    assert "affine" not in layer_kwargs(geom)


def test_metadata_is_plain_and_round_trips():
    d = rotation(0.1, 0.2, 0.3)
    grid = Grid((4, 5, 6), (0.5, 0.6, 0.7), (1.0, 2.0, 3.0), d.ravel())
    source = Grid((5, 4), (0.6, 0.5), (2.0, 1.0), (0.0, 1.0, 1.0, 0.0))
    geom = Geometry(grid, source, "PLS", "/data/scan.nii.gz", "1.2.3")
    meta = attach_geometry({"other": 1}, geom)
    assert meta["other"] == 1 and GEOMETRY_KEY in meta
    json.dumps(meta)  # plain Python types only
    assert geometry_from_metadata(copy.deepcopy(meta)) == geom
    assert geometry_from_metadata({"metadata": meta, "scale": [1, 1, 1]}) == geom  # layer state
    assert geometry_from_metadata({}) is None
    assert geometry_from_metadata(None) is None


def test_from_affine_inverts_affine_zyx():
    d = rotation(0.2, 0.0, -0.4) @ np.diag([1.0, -1.0, 1.0])
    grid = Grid((7, 6, 5), (0.5, 1.5, 3.0), (10.0, -20.0, 5.0), d.ravel())
    geom = Geometry(grid, grid, orientation_code(d))
    again = Geometry.from_affine(grid.shape, geom.affine_zyx())
    np.testing.assert_allclose(again.grid.spacing, grid.spacing)
    np.testing.assert_allclose(again.grid.origin, grid.origin)
    np.testing.assert_allclose(again.grid.direction, grid.direction, atol=1e-12)
    assert again.orientation == geom.orientation


def test_orientation_code_matches_sitk(rng):
    for _ in range(20):
        m = next(itertools.islice(signed_permutations(), int(rng.integers(48)), None))
        d = rotation(*rng.uniform(-0.3, 0.3, 3)) @ m
        assert orientation_code(d) == (
            sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(d.ravel().tolist())
        )
    assert orientation_code(np.eye(3)) == "LPS"
    assert orientation_code(np.diag([-1, -1, 1])) == "RAS"


def test_oblique_degrees():
    assert oblique_degrees(np.eye(3)) == 0
    assert oblique_degrees(rotation(0, 0, np.radians(12.0))) == pytest.approx(12.0)
    assert oblique_degrees(np.eye(3) + 1e-8) < 1e-3  # float32 noise is not oblique
    assert oblique_degrees(np.eye(2)) == 0


def test_to_source_array_rejects_wrong_shape():
    grid = Grid((4, 5, 6), (1, 1, 1), (0, 0, 0), np.eye(3).ravel())
    with pytest.raises(ValueError, match=r"shape"):
        Geometry(grid, grid).to_source_array(np.zeros((4, 5, 6)))
