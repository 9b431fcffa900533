"""The scan checks against the shipped model card: each fires on a crafted case, none on the
demo scan. Also the card itself and the analysis event that carries the checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from napari_consign._sample_data import sample_data_path
from napari_consign.body_mask import BODY_RULE, body_mask
from napari_consign.models.card import ModelCard
from napari_consign.ood import (
    SPACING_RATIO,
    check_scan,
    guarantee_caveat,
    intensity_distance,
    normalised_histogram,
)


@pytest.fixture(scope="module")
def card() -> ModelCard:
    info = json.loads(sample_data_path("unet_lesions.json").read_text())
    return ModelCard.from_dict(info["card"])


@pytest.fixture(scope="module")
def demo() -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(sample_data_path("demo_scan.nii.gz"))))


DEMO_SPACING = (2.0, 2.0, 2.0)


def test_shipped_card(card):
    assert card.modality == "MR" and card.spacing_zyx == (2.0, 2.0, 2.0)
    assert card.body_mask == BODY_RULE and card.normalization["kind"] == "percentile"
    assert card.intensity is not None and card.intensity.threshold > 0
    assert abs(sum(card.intensity.histogram) - 1) < 1e-6
    assert ModelCard.from_dict(card.to_dict()) == card
    assert "MR" in card.summary()


def test_card_errors_name_the_field():
    with pytest.raises(ValueError, match="'modality'"):
        ModelCard.from_dict({"spacing_zyx": [2, 2, 2]})
    with pytest.raises(ValueError, match="spacing_zyx"):
        ModelCard.from_dict({"modality": "MR", "spacing_zyx": [2, 0, 2]})


def test_demo_scan_passes_every_check(card, demo):
    report = check_scan(demo, card, spacing_zyx=DEMO_SPACING, modality="MR")
    assert report.ok and report.warnings == ()
    assert all(c.ok for c in report.checks), report.checks
    assert guarantee_caveat(report).startswith("The guarantee holds on average over scans like")


def test_modality_mismatch_fires(card, demo):
    report = check_scan(demo, card, spacing_zyx=DEMO_SPACING, modality="CT")
    assert [c.name for c in report.checks if c.ok is False] == ["modality"]
    assert "the scan is CT" in report.warnings[0]
    assert guarantee_caveat(report).startswith("Caution")
    unknown = check_scan(demo, card, spacing_zyx=DEMO_SPACING, modality=None)
    assert unknown.ok and unknown.check("modality").ok is None


def test_spacing_far_from_the_card_fires(card, demo):
    thick = (2.0 * SPACING_RATIO * 1.2, 2.0, 2.0)  # e.g. 6 mm slices
    report = check_scan(demo, card, spacing_zyx=thick, modality="MR")
    assert [c.name for c in report.checks if c.ok is False] == ["spacing"]
    assert "along z" in report.warnings[0]
    fine = check_scan(demo, card, spacing_zyx=(1.0, 1.0, 1.0), modality="MR")
    assert fine.check("spacing").ok  # 1 mm is resampled, not a caution


def test_intensity_far_from_training_fires_on_a_ct(card):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    report = check_scan(hu[None].astype(np.float32), card, modality=None)
    check = report.check("intensity")
    assert check.ok is False and check.value > check.limit
    assert "intensity histogram far" in report.warnings[0]


def test_intensity_of_a_uniform_phantom_fires(card):
    phantom = np.zeros((20, 64, 64), np.float32)
    phantom[4:16, 16:48, 16:48] = 500.0  # one flat tissue: nothing like a brain's histogram
    phantom += np.random.default_rng(0).normal(0, 5, phantom.shape).astype(np.float32)
    check = check_scan(phantom, card, spacing_zyx=DEMO_SPACING).check("intensity")
    assert check.ok is False and check.value > check.limit


def test_histogram_distance_is_zero_for_the_reference(card):
    ref = card.intensity
    assert intensity_distance(np.asarray(ref.histogram), ref) == pytest.approx(0.0)


def test_demo_histogram_is_normalised(card, demo):
    h = normalised_histogram(demo, body_mask(demo), np.asarray(card.intensity.edges))
    assert h.sum() == pytest.approx(1.0) and (h >= 0).all()


def test_model_without_card_gets_no_checks(demo):
    report = check_scan(demo, None)
    assert report.ok and report.check("card").ok is None


def test_predict_prints_the_failed_checks_and_the_caution(card, demo, capsys):
    from napari_consign.analysis import ScanChecked
    from napari_consign.cli.predict import print_scan_check

    report = check_scan(demo, card, spacing_zyx=DEMO_SPACING, modality="CT")
    print_scan_check(ScanChecked(report, guarantee_caveat(report)), quiet=True)
    err = capsys.readouterr().err
    assert "warning: the scan is CT" in err and "Caution" in err
    ok = check_scan(demo, card, spacing_zyx=DEMO_SPACING, modality="MR")
    print_scan_check(ScanChecked(ok, guarantee_caveat(ok)), quiet=True)
    assert capsys.readouterr().err == ""
