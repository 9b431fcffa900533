"""The analysis on a scan whose spacing differs from the model card's: it samples on the model
grid, returns everything on the scan's grid, bounded by the body mask, and says so."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage as ndi

from napari_consign import analysis as an
from napari_consign._sample_data import sample_data_path
from napari_consign.conformal import CRC
from napari_consign.models import Sampler, load_builtin_model
from napari_consign.scan_view import ScanView
from napari_consign.synthetic import lesion_cases


@pytest.fixture(scope="module")
def fine_scan() -> np.ndarray:
    """Six demo slices with lesions (2 mm), upsampled to 1 mm: (12, 224, 192)."""
    demo = sitk.GetArrayFromImage(sitk.ReadImage(str(sample_data_path("demo_scan.nii.gz"))))
    return ndi.zoom(demo[40:46].astype(np.float32), 2, order=1)


@pytest.fixture(scope="module")
def crc() -> CRC:
    d = lesion_cases(60, size=32, n_samples=2, seed=5)
    return CRC().fit(d["samples"].mean(1), d["masks"])


def test_run_on_a_1mm_scan_comes_back_on_its_grid(fine_scan, crc):
    sampler = Sampler(load_builtin_model(), n_samples=3, device="cpu", seed=0)
    cal = an.CalibrationSpec(kind="given", methods={"crc": crc})
    events = []
    gen = an.run_analysis(
        fine_scan, sampler, cal, ["crc"], start_slice=7, spacing_zyx=(1.0, 1.0, 1.0), modality="MR"
    )
    result = an.run_to_completion(gen, events.append)
    checked = next(e for e in events if isinstance(e, an.ScanChecked))
    assert events.index(checked) < next(
        i for i, e in enumerate(events) if isinstance(e, an.Progress) and e.stage == "sampling"
    )
    assert any("resampled from 1 x 1 x 1 mm" in n for n in checked.report.notes)
    assert checked.report.ok, checked.report.warnings
    preview = next(e for e in events if isinstance(e, an.SlicePreview))
    assert preview.z == 7 and preview.bands["crc"].shape == (1, 224, 192)
    view = result.view
    assert view.resampled and view.volume.shape == (6, 112, 96)
    assert result.mean.shape == fine_scan.shape and result.var.shape == fine_scan.shape
    bands = result.bands["crc"]
    assert bands.shape == fine_scan.shape  # exported labels stay on the scan's grid
    for a in bands.alphas[::10]:
        inner, outer = bands.masks(a)
        assert not (outer & ~view.body_source).any() and not (inner & ~outer).any()
    state = an.ImageAnalysis(shape=fine_scan.shape)
    for e in events:
        state.apply(e)
    assert state.scan_check is checked and checked.caveat.startswith("The guarantee holds")


def test_scan_without_spacing_or_card_is_used_as_it_is(fine_scan):
    view = ScanView.prepare(fine_scan, None, (1.0, 1.0, 1.0))
    assert not view.resampled and view.volume is fine_scan and view.body_source is None
    m = np.zeros(fine_scan.shape, np.float32)
    assert view.map_to_source(m) is m
