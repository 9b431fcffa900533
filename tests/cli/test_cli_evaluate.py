"""``napari-consign evaluate`` end to end on NPZ files, and its bad-input exits."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_consign.cli import main
from napari_consign.synthetic import lesion_cases

SAMPLE_NPZ = Path(__file__).resolve().parents[2] / "sample_data" / "synthetic_samples.npz"


def test_evaluate_writes_report(samples_npz, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = main(
        [
            "evaluate",
            "--samples",
            str(samples_npz),
            "--methods",
            "crc",
            "--alpha",
            "0.2",
            "--splits",
            "4",
            "--seed",
            "1",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["alpha"] == 0.2 and report["splits"] == 4 and report["n_units"] == 60
    assert report["n_cal"] + report["n_test"] == 60
    crc = report["methods"]["crc"]
    for key in (
        "marginal_coverage",
        "coverage_gap",
        "mean_fnr",
        "inner_loss",
        "outer_area",
        "inner_area",
        "tau_outer",
        "tau_inner",
        "n_cal_empty",
        "n_test_empty",
    ):
        assert set(crc[key]) == {"mean", "sd"}
    assert crc["n_cal_empty"]["mean"] + crc["n_test_empty"]["mean"] > 0
    assert abs(crc["mean_fnr"]["mean"] - (1 - crc["marginal_coverage"]["mean"])) < 1e-12
    assert "crc" in capsys.readouterr().out


def test_same_seed_same_report(samples_npz, tmp_path):
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    for p in paths:
        main(["evaluate", "--samples", str(samples_npz), "--splits", "3", "--json", str(p)])
    assert paths[0].read_text() == paths[1].read_text()


def test_multiclass_samples(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(30, 4, 3, 8, 8))
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    masks = rng.integers(0, 3, size=(30, 8, 8))
    path = tmp_path / "mc.npz"
    np.savez(path, samples=probs, masks=masks)
    assert main(["evaluate", "--samples", str(path), "--alpha", "0.3", "--splits", "2"]) == 0


def test_multiclass_consign_and_pixelwise(tmp_path):
    """(n, N_s, L, H, W) samples through CONSIGN and the pixel-wise baseline: set metrics."""
    one, two = (lesion_cases(24, size=10, n_samples=5, seed=s) for s in (1, 2))
    pa, pb = one["samples"], two["samples"]  # two lesion classes, background 0
    q = np.stack([(1 - pa) * (1 - pb), pa * (1 - pb), (1 - pa) * pb], axis=2)
    masks = np.where(one["masks"] > 0, 1, np.where(two["masks"] > 0, 2, 0))
    path, out = tmp_path / "mc.npz", tmp_path / "mc.json"
    np.savez(path, samples=(q / q.sum(axis=2, keepdims=True)).astype(np.float32), masks=masks)
    argv = ["evaluate", "--samples", str(path), "--methods", "consign,pixelwise", "--quiet"]
    argv += ["--alpha", "0.3", "--beta", "0.8", "--k", "2", "--splits", "2", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["n_units"] == 24
    for name in ("consign", "pixelwise"):
        metrics = report["methods"][name]
        assert 0.0 < metrics["set_coverage"]["mean"] <= 1.0
        assert metrics["chao1_100"]["mean"] > 1.0  # sets hold more than one segmentation
        assert 0.0 < metrics["corr_100"]["mean"] <= 1.0


def _text_file(path):
    path.write_text("not a zip")
    return path


def _bad(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda t: t / "missing.npz", [], "no such file"),
        (lambda t: _text_file(t / "junk.npz"), [], "not a readable"),
        (lambda t: _bad(t, samples=np.zeros((4, 2, 3, 3))), [], "missing array"),
        (lambda t: _bad(t, samples=np.zeros((4, 3, 3)), masks=np.zeros((4, 3, 3))), [], "expected"),
        (
            lambda t: _bad(t, samples=np.full((4, 2, 3, 3), 2.0), masks=np.zeros((4, 3, 3))),
            [],
            r"outside \[0, 1\]",
        ),
        (lambda t: _bad(t, samples=np.zeros((4, 2, 3, 3)), masks=np.zeros((4, 3, 4))), [], "shape"),
        (
            lambda t: _bad(t, samples=np.zeros((4, 2, 3, 3)), masks=np.full((4, 3, 3), 2)),
            [],
            "labels",
        ),
        (lambda t: SAMPLE_NPZ, ["--alpha", "1.5"], "alpha"),
        (lambda t: SAMPLE_NPZ, ["--alpha", "0.001"], "too small"),
        (lambda t: SAMPLE_NPZ, ["--methods", "nope"], "unknown method"),
        (lambda t: SAMPLE_NPZ, ["--cal-fraction", "0.9999"], "cannot be split"),
        (lambda t: SAMPLE_NPZ, ["--json", str(SAMPLE_NPZ)], "overwrite"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, make, extra, message):
    path = make(tmp_path)
    assert main(["evaluate", "--samples", str(path), "--splits", "2", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.search(message, err), err


def test_console_script_runs_on_the_shipped_samples():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "napari_consign",
            "evaluate",
            "--samples",
            str(SAMPLE_NPZ),
            "--splits",
            "3",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "crc" in result.stdout and "excluded empty masks" in result.stdout
