"""``napari-consign demo --headless``: screenshots and metrics of the demo scan."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from napari_consign.cli import demo
from napari_consign.cli.errors import CLIError

#: What ``demo --headless --out DIR`` writes for CRC and COAT.
DEMO_FILES = {
    "window.png",
    "bands_crc.png",
    "bands_coat.png",
    "compare.png",
    "disagreement.png",
    "metrics.json",
}


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    demo.add_parser(sub)
    return parser.parse_args(["demo", *argv])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--headless"], "needs --out"),
        (["--methods", "crc,nope", "--headless", "--out", "x"], "choose from"),
        (["--alpha", "1.5"], "must lie in"),
        (["--n-samples", "1"], "at least 2"),
        (["--truth", "mask.nii.gz"], "needs --scan"),
        (["--scan", "no-such-scan.nii.gz"], "no such file"),
        (["--scan", ".", "--slices", "1:2"], "demo scan only"),
    ],
)
def test_demo_bad_arguments(argv, message):
    with pytest.raises(CLIError, match=message):
        demo.run(_args(*argv))


@pytest.mark.slow
def test_demo_headless(qapp, tmp_path, bundle_dir):
    from PIL import Image

    out = tmp_path / "out"
    argv = ["--headless", "--out", str(out), "--slices", "40:44", "--n-samples", "4"]
    assert demo.run(_args(*argv, "--bundles", str(bundle_dir))) == 0
    names = {p.name for p in out.iterdir()}
    assert names == DEMO_FILES
    report = json.loads((out / "metrics.json").read_text())
    assert report["shape_zyx"] == [4, 112, 96] and report["slices"] == [40, 44]
    for method in ("crc", "coat"):
        m = report["methods"][method]
        assert m["outer_ml"] >= m["inner_ml"] >= 0
        assert 0 <= m["tpr"] <= 1 and m["inner_fp_ml"] >= 0
        assert "misses at most 10%" in m["guarantee"]
    compare = np.asarray(Image.open(out / "compare.png"))
    assert compare.shape[1] == 1200 and len(np.unique(compare.reshape(-1, 4), axis=0)) > 10
    with pytest.raises(CLIError, match="slices"):
        demo.run(_args("--headless", "--out", str(out), "--slices", "70:90"))


def test_demo_refuses_a_corrupt_scan_before_opening_napari(tmp_path):
    from napari_consign.io.errors import ConsignIOError

    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a NIfTI file")
    with pytest.raises(ConsignIOError):
        demo.run(_args("--headless", "--out", str(tmp_path / "out"), "--scan", str(bad)))
    assert bad.read_bytes() == b"not a NIfTI file"


@pytest.mark.slow
def test_demo_headless_on_a_scan_of_ones_own(qapp, tmp_path, bundle_dir):
    """``--scan``: a real brain MRI nobody here tuned for (nibabel's ``anatomical.nii``), no
    ground truth: the same screenshots, metrics without TPR, the input left as it was."""
    import hashlib
    from pathlib import Path

    import nibabel

    scan = Path(nibabel.__file__).parent / "tests" / "data" / "anatomical.nii"
    before = hashlib.sha256(scan.read_bytes()).hexdigest()
    out = tmp_path / "own"
    argv = ["--headless", "--out", str(out), "--scan", str(scan), "--n-samples", "4"]
    assert demo.run(_args(*argv, "--bundles", str(bundle_dir))) == 0
    assert {p.name for p in out.iterdir()} == DEMO_FILES
    report = json.loads((out / "metrics.json").read_text())
    assert report["scan"] == "anatomical.nii" and sorted(report["shape_zyx"]) == [25, 33, 41]
    assert report["focus_slice"] == report["shape_zyx"][0] // 2  # no mask: the middle slice
    for method in ("crc", "coat"):
        m = report["methods"][method]
        assert m["outer_ml"] >= m["inner_ml"] >= 0 and "tpr" not in m
    assert hashlib.sha256(scan.read_bytes()).hexdigest() == before


@pytest.mark.slow
def test_demo_headless_with_the_shipped_bundles(qapp, tmp_path, builtin_model_id):
    """The real shipped bundles (made for the bundled model) on three slices of the demo scan:
    screenshots that show the bands and metrics that agree with the bundles."""
    from PIL import Image

    from napari_consign.analysis import bundled_bundle_path
    from napari_consign.calibration import read_bundle_header
    from napari_consign.ui.layers import DISAGREEMENT_COLOURS, method_colours

    headers = {}
    for method in ("crc", "coat"):
        path = bundled_bundle_path(method)
        assert path.is_file(), f"shipped bundle {path} is missing"
        headers[method] = read_bundle_header(path)
        assert headers[method]["model_id"] == builtin_model_id  # made for the bundled model
    n_samples = headers["crc"]["extra"]["n_samples"]  # the calibrated N_s: the guarantee holds

    out = tmp_path / "out"
    argv = ["--headless", "--out", str(out), "--slices", "40:43", "--alpha", "0.3"]
    assert demo.run(_args(*argv, "--n-samples", str(n_samples), "--device", "cpu")) == 0
    assert {p.name for p in out.iterdir()} == DEMO_FILES
    report = json.loads((out / "metrics.json").read_text())
    assert report["calibration"] == "shipped bundles"
    assert report["model_id"] == builtin_model_id
    assert report["shape_zyx"] == [3, 112, 96] and report["slices"] == [40, 43]
    assert report["n_samples"] == n_samples and report["alpha"] == pytest.approx(0.3)
    assert report["failed"] == {}
    assert report["screenshots"] == [
        "window.png",
        "bands_crc.png",
        "bands_coat.png",
        "compare.png",
        "disagreement.png",
    ]
    for method in ("crc", "coat"):
        m = report["methods"][method]
        assert m["alpha"] == pytest.approx(0.3)
        assert m["n_used"] > 100  # the bundle's calibration units, not a small test set
        assert m["outer_ml"] >= m["inner_ml"] >= 0 and m["outer_ml"] > 0
        assert m["ring_ml"] == pytest.approx(m["outer_ml"] - m["inner_ml"], abs=1e-6)
        assert 0 < m["tpr"] <= 1 and m["inner_fp_ml"] >= 0
        assert "misses at most 30%" in m["guarantee"]

    def colour_pixels(name: str, rgb: tuple, atol: float = 60) -> int:
        shot = np.asarray(Image.open(out / name).convert("RGB")).reshape(-1, 3).astype(int)
        return int((np.abs(shot - np.array(rgb[:3]) * 255).max(axis=1) < atol).sum())

    for method in ("crc", "coat"):
        shot = np.asarray(Image.open(out / f"bands_{method}.png"))
        assert shot.shape[:2] == (700, 600)
        # the bands are on the picture in the method's own colours: the inner fill
        # (translucent over the scan) and the contour of the outer band
        inner, ring = method_colours(method)
        assert colour_pixels(f"bands_{method}.png", inner) > 50
        assert colour_pixels(f"bands_{method}.png", ring) > 50
    compare = np.asarray(Image.open(out / "compare.png"))
    assert compare.shape[:2] == (700, 1200)
    left, right = compare[:, :600, :3].astype(int), compare[:, 600:, :3].astype(int)
    for half, method in ((left, "crc"), (right, "coat")):  # each panel: its method's ring
        ring = np.array(method_colours(method)[1][:3]) * 255
        assert (np.abs(half - ring).max(axis=-1) < 60).sum() > 20, method
    both, a_only, b_only = (DISAGREEMENT_COLOURS[k] for k in ("both", "A only", "B only"))
    assert colour_pixels("disagreement.png", both, atol=40) > 50  # both outer bands
    differ = colour_pixels("disagreement.png", a_only, 40) + colour_pixels(
        "disagreement.png", b_only, 40
    )
    # and where they differ: with bands bounded by the body mask, CRC's and COAT's outer bands
    # on these slices at alpha 0.3 can coincide (the same voxels), so only when volumes differ
    outer = [report["methods"][m]["outer_ml"] for m in ("crc", "coat")]
    assert differ > 0 or outer[0] == pytest.approx(outer[1]), (differ, outer)
