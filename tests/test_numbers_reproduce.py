"""The published evaluation numbers reproduce bit for bit from the code.

Two reports are checked: the synthetic evaluation (docs/evaluation) and the shipped bundles'
held-out figures (``sample_data/bundles/evaluation.json``, quoted by the README).

``docs/evaluation/synthetic.json`` was written by (docs/evaluation.md)::

    napari-consign evaluate --samples sample_data/synthetic_samples.npz \
        --methods crc,at,coat,consign,pixelwise --alpha 0.1 --alphas 0.05,0.1,0.2,0.3 \
        --splits 10 --seed 0 --json docs/evaluation/synthetic.json

Methods are evaluated independently on the same splits, so a subset of them, with the same
training split (a method that trains is kept), gives the same numbers as the full run.
CONSIGN is left out here: its membership searches take most of the run's time.

``STALE`` lists the entries the published report holds from before a deliberate change, each
with the change; the test fails if any other entry differs, and also if a stale entry starts
to match (then regenerate the report and empty the list).
"""

from __future__ import annotations

import importlib.util
import json
from argparse import Namespace
from pathlib import Path

import pytest

from napari_consign._sample_data import load_cases, sample_data_path
from napari_consign.calibration import read_bundle_header
from napari_consign.conformal.evaluation import evaluate
from napari_consign.conformal.registry import MethodOptions
from napari_consign.npz_contract import load_segmentation_set

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "evaluation" / "synthetic.json"
METHODS = ["crc", "at", "coat", "pixelwise"]
ALPHAS = [0.05, 0.1, 0.2, 0.3]

#: (alpha, method, metric) the report holds from before a deliberate change of a method (then
#: regenerate the report with docs/evaluation.md's command and empty this set again).
STALE: set[tuple[str, str, str]] = set()  # none since the report's regeneration (2026-12-03)


@pytest.fixture(scope="module")
def published() -> dict:
    return json.loads(REPORT.read_text())


@pytest.fixture(scope="module")
def data():
    return load_segmentation_set(sample_data_path("synthetic_samples.npz"))


def _run(data, published: dict, splits: int, methods: list[str] = METHODS) -> dict:
    return evaluate(
        data,
        methods,
        published["alpha"],
        splits=splits,
        seed=published["seed"],
        cal_fraction=published["n_cal"] / published["n_units"],
        train_fraction=published["n_train"] / published["n_units"],
        alphas=ALPHAS,
    )


@pytest.mark.slow
def test_first_split_per_image_coverage_matches(data, published, one_torch_thread):
    """One split (the same first permutation) gives the first split's per-image TPRs (~1 min)."""
    got = _run(data, published, splits=1)
    assert (got["n_train"], got["n_cal"], got["n_test"]) == (
        published["n_train"],
        published["n_cal"],
        published["n_test"],
    )
    for m in METHODS:
        tprs = got["per_image_tpr"][m]
        assert tprs, m
        assert tprs == published["per_image_tpr"][m][: len(tprs)], m


@pytest.mark.slow
def test_consign_first_split_matches(data, published, one_torch_thread):
    """CONSIGN (K = 5, beta 0.9) on the first split: its envelope's per-image TPRs are the
    published ones (~1 min; all ten splits take most of the report's time). AT comes
    along because a method that trains keeps the report's train/calibration/test split."""
    got = _run(data, published, splits=1, methods=["at", "consign"])
    assert got["n_train"] == published["n_train"]
    for m in ("at", "consign"):
        tprs = got["per_image_tpr"][m]
        assert tprs, m
        assert tprs == published["per_image_tpr"][m][: len(tprs)], m


@pytest.mark.slow
def test_every_published_number_matches(data, published, one_torch_thread):
    """All 10 splits: every mean and SD at every alpha, and every per-image TPR (~8 min)."""
    got = _run(data, published, splits=published["splits"])
    differ = set()
    for alpha, by_method in got["sweep"].items():
        for m in METHODS:
            ref = published["sweep"][alpha][m]
            assert set(by_method[m]) == set(ref), (alpha, m)
            differ |= {(alpha, m, k) for k, v in by_method[m].items() if v != ref[k]}
    assert differ == STALE
    for m in METHODS:
        assert got["per_image_tpr"][m] == published["per_image_tpr"][m], m


def _make_bundles_script():
    """``scripts/make_bundles.py`` as a module: the procedure that made the shipped bundles."""
    spec = importlib.util.spec_from_file_location(
        "make_bundles", ROOT / "scripts" / "make_bundles.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_shipped_bundles_and_their_figures_reproduce(one_torch_thread):
    """CRC and the pixel-wise baseline refitted as ``scripts/make_bundles.py`` fits them (the
    bundled model's samples of the shipped cases, ~4 min): the same bundle state and the same
    held-out figures in ``evaluation.json``, bit for bit."""
    from napari_consign.models import Sampler, load_builtin_model
    from napari_consign.pipeline import sample_cases

    script = _make_bundles_script()
    published = json.loads(sample_data_path("bundles/evaluation.json").read_text())
    sampler = Sampler(
        load_builtin_model(), n_samples=published["n_samples"], seed=published["seed"]
    )
    cal, test = (
        script.with_body_rule(sample_cases(sampler, c["images"], c["masks"]))
        for c in (load_cases("calibration"), load_cases("test"))
    )
    args = Namespace(alpha=published["alpha"])
    options = MethodOptions(seed=published["seed"], alpha=published["alpha"])
    for name in ("crc", "pixelwise"):
        method, alpha, metrics = script.fit_and_evaluate(name, args, options, None, cal, test)
        header = read_bundle_header(sample_data_path(f"bundles/{name}.npz"))
        assert json.loads(json.dumps(method.to_state())) == header["state"], name
        ref = published["methods"][name]
        assert alpha == ref["alpha"] and metrics["n_test_used"] == ref["n_test_used"], name
        for key, value in metrics.items():
            if not key.startswith(("n_test", "n_cal")):
                assert value == ref[key], (name, key)
