"""Fixtures of the UI tests: a small real scan, calibration bundles built on the fly, a widget.

Bundles are calibrated here for the bundled model's identity on synthetic cases (fast and
deterministic); the shipped ones (``sample_data/bundles``) are replaced by a temporary folder,
so these tests do not depend on them. The scan is the demo scan cropped to six axial slices
with lesions, read through the plugin's own reader.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

N_SAMPLES = 4
Z_RANGE = (40, 46)


@pytest.fixture(scope="session")
def builtin_model_id() -> str:
    from napari_consign._sample_data import sample_data_path

    return json.loads(sample_data_path("unet_lesions.json").read_text())["sha256"]


@pytest.fixture(scope="session")
def synthetic_methods() -> dict:
    """CRC and COAT calibrated on synthetic cases (the UI needs calibrated objects, not
    statistically meaningful ones; the guarantees are tested in tests/conformal)."""
    from napari_consign.conformal import CRC, MethodOptions, SegmentationSet
    from napari_consign.conformal.adaptive import COAT
    from napari_consign.synthetic import lesion_cases

    d = lesion_cases(90, size=32, n_samples=N_SAMPLES, seed=7)
    data = SegmentationSet.from_samples(d["samples"], d["masks"], d["images"])
    train, cal = data.subset(np.arange(30)), data.subset(np.arange(30, 90))
    crc = CRC().fit(cal.scores, cal.masks)
    coat = COAT(MethodOptions(epochs=2, seed=0, conditioned=False))  # one curve: fast shifts
    coat.calibrate(cal, train)
    return {"crc": crc, "coat": coat}


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, synthetic_methods, builtin_model_id) -> Path:
    from napari_consign.calibration import save_bundle

    folder = tmp_path_factory.mktemp("bundles")
    for name, method in synthetic_methods.items():
        save_bundle(folder / f"{name}.npz", method, builtin_model_id)
    return folder


@pytest.fixture(scope="session")
def foreign_bundle(tmp_path_factory, synthetic_methods) -> Path:
    """A CRC bundle calibrated for another model."""
    from napari_consign.calibration import save_bundle

    path = tmp_path_factory.mktemp("foreign") / "crc.npz"
    return save_bundle(path, synthetic_methods["crc"], "0" * 64)


@pytest.fixture
def shipped_bundles(monkeypatch, bundle_dir) -> Path:
    """Make the widget find ``bundle_dir`` where the shipped bundles live."""
    from napari_consign.analysis import bundles

    monkeypatch.setattr(bundles, "bundled_bundle_dir", lambda: bundle_dir)
    return bundle_dir


@pytest.fixture(scope="session")
def small_scan(tmp_path_factory) -> tuple[Path, Path]:
    """The demo scan and mask cropped to slices 40..45 (NIfTI, true geometry)."""
    import SimpleITK as sitk

    from napari_consign._sample_data import sample_data_path

    folder = tmp_path_factory.mktemp("scan")
    out = []
    for name in ("demo_scan.nii.gz", "demo_mask.nii.gz"):
        img = sitk.ReadImage(str(sample_data_path(name)))
        dst = folder / name.replace(".nii.gz", "_small.nii.gz")
        sitk.WriteImage(img[:, :, Z_RANGE[0] : Z_RANGE[1]], str(dst), useCompression=True)
        out.append(dst)
    return out[0], out[1]


@pytest.fixture
def fake_consign():
    """A CONSIGN rebuilt from a hand-made state (as from a bundle): cheap to make."""
    from napari_consign.conformal.consign import CONSIGN

    alphas = [0.05, 0.1, 0.15, 0.2]
    rng = np.random.default_rng(0)
    stars = {str(a): np.sort(rng.uniform(0.2, 1.5, 40)).tolist() for a in alphas}
    state = {
        "method": "consign",
        "beta": 0.9,
        "k": 2,
        "n_classes": 2,
        "binary": True,
        "lam_step": 0.01,
        "lam_max": 5.0,
        "n_used": 40,
        "n_empty": 0,
        "alphas": alphas,
        "lambda_stars": stars,
    }
    return CONSIGN.from_state(state)


@pytest.fixture
def notes(monkeypatch) -> dict[str, list[str]]:
    """Notifications the widget shows, by kind (napari's functions are wrapped, not mocked)."""
    from napari.utils import notifications

    seen: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
    for kind in seen:
        original = getattr(notifications, f"show_{kind}")

        def record(message, _kind=kind, _orig=original):
            seen[_kind].append(str(message))
            return _orig(message)

        monkeypatch.setattr(notifications, f"show_{kind}", record)
    return seen


@pytest.fixture
def viewer_widget(make_napari_viewer, shipped_bundles, qtbot):
    """A shown viewer (pytest-xvfb) with the widget opened from the plugin menu, N_s = 4, CPU."""
    from ui_helpers import open_plugin_widget, stop_and_join

    viewer = make_napari_viewer(show=True)
    widget = open_plugin_widget(viewer)
    widget.ns_spin.setValue(N_SAMPLES)
    widget.device_combo.setCurrentText("cpu")
    yield viewer, widget
    stop_and_join(qtbot, widget)
