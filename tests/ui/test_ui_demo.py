"""``napari-consign demo --headless``: screenshots and metrics of the demo scan."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from napari_consign.cli import demo
from napari_consign.cli.errors import CLIError


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
    ],
)
def test_demo_bad_arguments(argv, message):
    with pytest.raises(CLIError, match=message):
        demo.run(_args(*argv))


def test_demo_headless(qapp, tmp_path, bundle_dir):
    from PIL import Image

    out = tmp_path / "out"
    argv = ["--headless", "--out", str(out), "--slices", "40:44", "--n-samples", "4"]
    assert demo.run(_args(*argv, "--bundles", str(bundle_dir))) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {
        "bands_crc.png",
        "bands_coat.png",
        "compare.png",
        "disagreement.png",
        "metrics.json",
    }
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
