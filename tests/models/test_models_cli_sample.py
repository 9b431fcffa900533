"""``napari-consign sample``: NPZ contract on a small scan, clear errors on bad input."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from models_helpers import make_tiny_unet

from napari_consign import _sample_data as sd
from napari_consign.cli import sample
from napari_consign.cli.errors import CLIError
from napari_consign.io.safe_write import OutputError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="napari-consign")
    sample.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sample", *argv])
    return args.run(args)


@pytest.fixture
def small_scan(tmp_path):
    """Three slices of the demo scan and mask, with their geometry."""
    img = sitk.ReadImage(str(sd.sample_data_path(sd.DEMO_SCAN)))[:, :, 40:43]
    msk = sitk.ReadImage(str(sd.sample_data_path(sd.DEMO_MASK)))[:, :, 40:43]
    scan, mask = tmp_path / "scan.nii.gz", tmp_path / "mask.nii.gz"
    sitk.WriteImage(img, str(scan))
    sitk.WriteImage(msk, str(mask))
    return scan, mask


def test_sample_writes_npz_contract(tmp_path, small_scan):
    scan, mask = small_scan
    model = tmp_path / "tiny.pt"
    torch.jit.script(make_tiny_unet()).save(str(model))
    out = tmp_path / "out.npz"
    argv = [
        "--scan",
        str(scan),
        "--mask",
        str(mask),
        "--model",
        str(model),
        "--n-samples",
        "3",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--seed",
        "1",
        "--quiet",
    ]
    assert _run(argv) == 0
    with np.load(out, allow_pickle=False) as z:
        assert z["samples"].shape == (3, 3, 112, 96) and z["samples"].dtype == np.float16
        assert z["masks"].shape == (3, 112, 96) and z["masks"].dtype == np.uint8
        assert z["images"].shape == (3, 112, 96) and z["images"].dtype == np.float32
        assert np.allclose(z["spacing"], 2.0)
        first = z["samples"].copy()
    assert _run([*argv, "--overwrite"]) == 0  # same seed, same samples (replacing its own file)
    with np.load(out) as z:
        assert np.array_equal(z["samples"], first)


def test_sample_npz_loads_as_contract_and_evaluates(tmp_path, capsys):
    """``sample --mask`` with the bundled model writes what ``evaluate`` reads: the NPZ loads
    through the contract reader with the right shapes, dtypes and ranges, and ``evaluate``
    runs on it."""
    from napari_consign.cli import main
    from napari_consign.npz_contract import load_segmentation_set

    z0, z1 = 40, 48  # slices that all contain lesion: every unit counts for calibration
    img = sitk.ReadImage(str(sd.sample_data_path(sd.DEMO_SCAN)))[:, :, z0:z1]
    msk = sitk.ReadImage(str(sd.sample_data_path(sd.DEMO_MASK)))[:, :, z0:z1]
    scan, mask = tmp_path / "scan.nii.gz", tmp_path / "mask.nii.gz"
    sitk.WriteImage(img, str(scan))
    sitk.WriteImage(msk, str(mask))
    out = tmp_path / "b.npz"
    argv = ["--scan", str(scan), "--mask", str(mask), "--n-samples", "2", "--out", str(out)]
    assert _run([*argv, "--device", "cpu", "--quiet"]) == 0
    n, shape = z1 - z0, (112, 96)
    data = load_segmentation_set(out)
    assert len(data) == n
    assert data.samples.shape == (n, 2, *shape) and data.samples.dtype == np.float16
    assert np.all((data.samples >= 0) & (data.samples <= 1)) and np.isfinite(data.samples).all()
    assert data.samples[:, 0].astype(np.float32).std() > 0  # real probabilities, not a constant
    assert data.masks.shape == (n, *shape) and set(np.unique(data.masks)) == {0, 1}
    np.testing.assert_array_equal(data.masks, sitk.GetArrayFromImage(msk) != 0)
    assert data.masks.reshape(n, -1).any(axis=1).all()
    assert data.scores.shape == (n, *shape) and data.scores.min() >= 0 and data.scores.max() <= 1
    np.testing.assert_allclose(data.scores, data.samples.astype(np.float64).mean(1), atol=1e-6)
    assert data.images.shape == (n, *shape) and data.images.dtype == np.float32
    np.testing.assert_array_equal(data.images, sitk.GetArrayFromImage(img).astype(np.float32))
    capsys.readouterr()
    code = main(
        ["evaluate", "--samples", str(out), "--methods", "crc", "--splits", "2", "--alpha", "0.3"]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "crc" in printed.out.lower()


def test_bad_inputs(tmp_path, small_scan):
    scan, mask = small_scan
    out = str(tmp_path / "o.npz")
    with pytest.raises(CLIError, match="no such file"):
        _run(["--scan", str(tmp_path / "none.nii.gz"), "--out", out])
    text = tmp_path / "notes.nii.gz"
    text.write_text("not an image")
    with pytest.raises(CLIError, match=r"Could not read .*notes\.nii\.gz"):
        _run(["--scan", str(text), "--out", out])
    with pytest.raises(CLIError, match=r"must end in \.npz"):
        _run(["--scan", str(scan), "--out", str(tmp_path / "o.npy")])
    with pytest.raises((CLIError, OutputError), match="inputs are never overwritten"):
        _run(["--scan", str(scan), "--out", str(scan)])
    four_d = tmp_path / "4d.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 3, 8, 8), np.float32), False), str(four_d))
    with pytest.raises(CLIError, match="is 4D"):
        _run(["--scan", str(four_d), "--out", out])
    other = tmp_path / "other_mask.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(mask))[:, :, :2], str(other))
    with pytest.raises(CLIError, match="differs from the scan's"):
        _run(["--scan", str(scan), "--mask", str(other), "--out", out])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CLIError, match=r"junk\.pt is not a model file"):
        _run(["--scan", str(scan), "--model", str(junk), "--out", out, "--device", "cpu"])
    with pytest.raises(CLIError, match="unknown device"):
        _run(["--scan", str(scan), "--out", out, "--device", "tpu"])
