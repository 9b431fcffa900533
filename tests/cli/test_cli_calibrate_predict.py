"""calibrate -> predict -> evaluate on generated NIfTI scans, checked against their geometry."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_consign.calibration import load_bundle, read_bundle_header
from napari_consign.models import load_builtin_model


def test_calibrate_then_predict(run_cli, cases_dir, grid, tmp_path, capsys):
    bundles = tmp_path / "bundles"
    code = run_cli(
        [
            "calibrate", "--cases", str(cases_dir), "--methods", "crc,coat",
            "--out", str(bundles), "--n-samples", "3", "--epochs", "3", "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    identity = load_builtin_model().identity
    for name in ("crc", "coat"):
        header = read_bundle_header(bundles / f"{name}.npz")
        assert header["method"] == name and header["model_id"] == identity
        assert header["extra"]["n_samples"] == 3
        load_bundle(bundles / f"{name}.npz", model_id=identity)
    # scans are resampled to the model's 2 mm: 4 x 2.5 mm become 5 slices, of which 4 have
    # structure (tests/cli/test_cases_model_grid.py); 2 of 8 scans train COAT's predictor
    assert read_bundle_header(bundles / "crc.npz")["extra"]["n_cal_units"] == 6 * 4

    scan = cases_dir / "case0.nii.gz"
    before = scan.read_bytes()
    out = tmp_path / "bands"
    code = run_cli(
        [
            "predict", "--scan", str(scan), "--bundle", str(bundles / "crc.npz"),
            "--bundle", str(bundles / "coat.npz"), "--alpha", "0.2,0.3",
            "--out", str(out), "--quiet", "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0
    assert scan.read_bytes() == before
    report = json.loads((out / "case0_bands.json").read_text())
    assert report["model_id"] == identity and len(report["bands"]) == 4
    ref = sitk.ReadImage(str(scan))
    for row in report["bands"]:
        img = sitk.ReadImage(row["file"])
        assert img.GetSize() == ref.GetSize() == (grid["size"], grid["size"], grid["slices"])
        for key in ("spacing", "origin", "direction"):
            getter = getattr(img, f"Get{key.title()}")
            assert np.allclose(getter(), grid[key]) and getter() == getattr(ref, getter.__name__)()
        labels = sitk.GetArrayFromImage(img)
        assert set(np.unique(labels)) <= {0, 1, 2}
        voxel_ml = np.prod(grid["spacing"]) / 1000.0
        assert row["outer_ml"] == pytest.approx(np.count_nonzero(labels) * voxel_ml)
        assert row["inner_ml"] == pytest.approx(np.count_nonzero(labels == 2) * voxel_ml)
    printed = capsys.readouterr().out
    assert "outer mL" in printed and "coat" in printed

    # a bundle for another model is refused with one line
    code = run_cli(
        [
            "predict", "--scan", str(scan), "--bundle", str(bundles / "crc.npz"),
            "--model", str(_other_model(tmp_path)), "--out", str(tmp_path / "x"),
            "--quiet", "--device", "cpu",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "calibrated for model" in err


def _other_model(tmp_path):
    """The built-in UNet's weights, slightly changed: another model identity."""
    import shutil

    import torch

    from napari_consign._sample_data import sample_data_path

    state = torch.load(sample_data_path("unet_lesions.pt"), weights_only=True)
    first = next(k for k, v in state.items() if v.dtype.is_floating_point)
    state[first] = state[first] * 1.01
    torch.save(state, tmp_path / "other.pt")
    shutil.copy(sample_data_path("unet_lesions.json"), tmp_path / "other.json")
    return tmp_path / "other.pt"


def test_evaluate_tables_and_plots(run_cli, samples_npz, tmp_path):
    md, plots, js = tmp_path / "eval.md", tmp_path / "plots", tmp_path / "eval.json"
    code = run_cli(
        [
            "evaluate", "--samples", str(samples_npz), "--methods", "crc",
            "--alphas", "0.2,0.3", "--alpha", "0.2", "--splits", "3", "--quiet",
            "--markdown", str(md), "--plots", str(plots), "--json", str(js),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(js.read_text())
    assert report["alphas"] == [0.2, 0.3] and set(report["sweep"]) == {"0.2", "0.3"}
    assert report["methods"] == report["sweep"]["0.2"]
    assert len(report["per_image_tpr"]["crc"]) <= 3 * report["n_test"]
    text = md.read_text()
    assert "| CRC | 0.3 |" in text and "plots/coverage_vs_alpha.png" in text
    for name in ("coverage_per_image", "coverage_vs_alpha", "band_size_vs_alpha"):
        assert (plots / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_single_alpha_matches_core(run_cli, samples_npz, tmp_path):
    from napari_consign.conformal.evaluation import evaluate
    from napari_consign.npz_contract import load_segmentation_set

    js = tmp_path / "e.json"
    args = ["--samples", str(samples_npz), "--splits", "3", "--seed", "2", "--quiet"]
    assert run_cli(["evaluate", *args, "--json", str(js)]) == 0
    core = evaluate(load_segmentation_set(samples_npz), ["crc"], 0.1, splits=3, seed=2)
    assert json.loads(js.read_text())["methods"] == json.loads(json.dumps(core["methods"]))


def test_evaluate_on_a_folder_of_scans(run_cli, cases_dir, tmp_path):
    js = tmp_path / "scans.json"
    argv = ["evaluate", "--cases", str(cases_dir), "--methods", "crc", "--alpha", "0.3"]
    argv += ["--splits", "2", "--n-samples", "2", "--quiet", "--json", str(js)]
    assert run_cli(argv) == 0
    report = json.loads(js.read_text())
    # 8 scans, each 4 slices with structure on the model's 2 mm grid: 32 units; 4 + 4 scans
    assert report["split_by"] == "scan" and report["n_units"] == 32
    assert (report["n_cal"], report["n_test"]) == (4, 4)
    assert report["methods"]["crc"]["n_test_used"]["mean"] == 16


def test_scan_splits_keep_each_scan_in_one_part():
    from napari_consign.conformal.evaluation import scan_split as _scan_split
    from napari_consign.conformal.evaluation import split_sizes

    units_per_scan = np.array([3, 1, 4, 2, 5, 2])
    owner = np.repeat(np.arange(6), units_per_scan)
    sizes = split_sizes(6, 0.5, 1 / 3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        perm, n_train, n_cal = _scan_split(rng, units_per_scan, sizes)
        assert sorted(perm) == list(range(units_per_scan.sum()))
        parts = [perm[:n_train], perm[n_train : n_train + n_cal], perm[n_train + n_cal :]]
        scans = [set(owner[p]) for p in parts]
        assert [len(s) for s in scans] == [sizes.train, sizes.cal, sizes.test]
        assert not (scans[0] & scans[1] or scans[0] & scans[2] or scans[1] & scans[2])
