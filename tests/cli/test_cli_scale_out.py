"""The Dask path (2-worker LocalCluster) gives the serial path's numbers exactly."""

import json

import numpy as np
import pytest

from napari_consign.calibration import load_bundle


@pytest.mark.slow
def test_dask_matches_serial(run_cli, cases_dir, samples_npz, tmp_path):
    for workers in ("1", "2"):
        code = run_cli(
            [
                "calibrate", "--cases", str(cases_dir), "--methods", "crc,coat",
                "--out", str(tmp_path / f"b{workers}"), "--n-samples", "2", "--epochs", "2",
                "--workers", workers, "--quiet",
            ]
        )  # fmt: skip
        assert code == 0
        code = run_cli(
            [
                "evaluate", "--samples", str(samples_npz), "--methods", "crc,coat",
                "--alphas", "0.2,0.3", "--alpha", "0.2", "--splits", "3", "--epochs", "2",
                "--input-size", "16", "--workers", workers, "--quiet",
                "--json", str(tmp_path / f"e{workers}.json"),
            ]
        )  # fmt: skip
        assert code == 0
    serial, dask = (json.loads((tmp_path / f"e{w}.json").read_text()) for w in "12")
    assert serial == dask
    for name in ("crc", "coat"):
        one, two = (load_bundle(tmp_path / f"b{w}" / f"{name}.npz") for w in "12")
        for alpha in (0.1, 0.2, 0.3):
            assert one.summary(alpha) == two.summary(alpha)
    crc1, crc2 = (load_bundle(tmp_path / f"b{w}" / "crc.npz") for w in "12")
    scores = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8)
    for a in (0.2, 0.3):
        assert np.array_equal(crc1.map_bands(scores).labels(a), crc2.map_bands(scores).labels(a))
