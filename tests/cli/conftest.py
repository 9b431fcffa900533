"""Fixtures of the team command line: tiny labelled NIfTI scans on a non-trivial grid."""

import numpy as np
import pytest
import SimpleITK as sitk

from napari_consign import cli
from napari_consign.synthetic import lesion_cases

SPACING = (0.8, 0.9, 2.5)  # x, y, z (SimpleITK order)
ORIGIN = (12.5, -30.0, 7.0)
DIRECTION = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # x flipped: not identity
N_SCANS, N_SLICES, SIZE = 8, 4, 32


@pytest.fixture
def run_cli(one_torch_thread):
    """The ``napari-consign`` entry point, returning its exit code."""
    return cli.main


def write_image(path, array, dtype=np.float32):
    img = sitk.GetImageFromArray(np.asarray(array, dtype=dtype))
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    img.SetDirection(DIRECTION)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture(scope="session")
def cases_dir(tmp_path_factory):
    """``case{i}.nii.gz`` + ``case{i}_mask.nii.gz``: 8 scans of 4 x 32 x 32, the last slice of
    every mask empty (left out by calibrate)."""
    folder = tmp_path_factory.mktemp("cases")
    d = lesion_cases(N_SCANS * N_SLICES, size=SIZE, n_samples=1, seed=3)
    images = d["images"].reshape(N_SCANS, N_SLICES, SIZE, SIZE) * 200.0
    masks = d["masks"].reshape(N_SCANS, N_SLICES, SIZE, SIZE).copy()
    masks[:, -1] = 0
    for i in range(N_SCANS):
        write_image(folder / f"case{i}.nii.gz", images[i])
        write_image(folder / f"case{i}_mask.nii.gz", masks[i], np.uint8)
    return folder


@pytest.fixture
def grid():
    """The generated scans' grid (SimpleITK x, y, z order) and size."""
    return {"spacing": SPACING, "origin": ORIGIN, "direction": DIRECTION, "size": SIZE,
            "slices": N_SLICES}  # fmt: skip


@pytest.fixture
def samples_npz(tmp_path):
    d = lesion_cases(60, size=16, n_samples=3, seed=5, empty_fraction=0.1)
    path = tmp_path / "cases.npz"
    np.savez(path, samples=d["samples"], masks=d["masks"], images=d["images"])
    return path
