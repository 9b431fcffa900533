"""The calibration bundles that ship in sample_data/: one per method, for the bundled model.

Each must load for the bundled UNet's identity (and be refused for another), answer at the
alphas it claims, and have its held-out evaluation recorded in ``evaluation.json``, whose
figures the README quotes.
"""

import json

import numpy as np
import pytest

from napari_consign._sample_data import sample_data_path
from napari_consign.calibration import BundleError, load_bundle, read_bundle_header
from napari_consign.conformal.registry import METHODS

BUNDLES = sample_data_path("bundles")


@pytest.fixture(scope="module")
def identity() -> str:
    meta = json.loads(sample_data_path("unet_lesions.json").read_text())
    return meta["sha256"]


@pytest.fixture(scope="module")
def evaluation() -> dict:
    return json.loads((BUNDLES / "evaluation.json").read_text())


@pytest.mark.parametrize("name", list(METHODS))
def test_bundle_ships_for_the_bundled_model(name, identity, evaluation):
    path = BUNDLES / f"{name}.npz"
    assert path.is_file(), f"no shipped bundle for {name}"
    header = read_bundle_header(path)
    assert header["method"] == name and header["model_id"] == identity
    method = load_bundle(path, model_id=identity)
    with pytest.raises(BundleError, match="calibrated for model"):
        load_bundle(path, model_id="0" * 64)

    report = evaluation["methods"][name]
    alpha = report.get("alpha", evaluation["alpha"])
    summary = method.summary(alpha)  # raises if the bundle cannot answer at that alpha
    assert all(np.isfinite(v) for v in summary.values())
    for key, value in summary.items():
        assert report[key] == value, key  # bit for bit: the figures the README quotes
    assert 0.0 < report["marginal_coverage"] <= 1.0
    assert evaluation["model_id"] == identity
