"""A sixth method, defined and registered here, runs everywhere without touching the package.

``ToyQuantile`` is a deliberately simple method (no guarantee claimed): at each alpha, the outer
band keeps the voxels scoring at least the alpha-quantile of the calibration foreground's
scores, the inner band those above the (1 - alpha)-quantile of the background's. It is one
class and one :func:`~napari_consign.conformal.registry.register` call; the test runs it
through calibrate (Python and CLI), evaluate (Python and CLI), bundles (save, load, levels) and
the dock widget (a bundle file, a run on a scan, its band layer and guarantee text).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
from ui_helpers import open_scan, wait_done

from napari_consign import cli
from napari_consign.calibration import bundle_levels, load_bundle, read_bundle_header, save_bundle
from napari_consign.conformal import Bands, ConformalMethod, ScanStats, SegmentationSet, evaluate
from napari_consign.conformal.bands import DEFAULT_ALPHAS, feasible_alphas
from napari_consign.conformal.options import MethodOptions
from napari_consign.conformal.registry import METHODS, make_method, register
from napari_consign.guarantee_text import guarantee, method_label
from napari_consign.pipeline import fit_methods
from napari_consign.synthetic import lesion_cases

NAME = "toyq"


class ToyQuantile(ConformalMethod):
    """Fixed-quantile thresholds of the calibration scores, one pair per grid alpha."""

    name = NAME
    label = "Toy quantile"

    def __init__(self, options: MethodOptions | None = None) -> None:
        self.options = options or MethodOptions()
        self.table: dict[float, tuple[float, float]] = {}
        self.n_used = self.n_empty = 0

    def calibrate(self, cal, train=None, *, cancel=None) -> None:
        fg = np.asarray(cal.masks) != 0
        scores = np.asarray(cal.scores, np.float64)
        used = fg.reshape(len(fg), -1).any(axis=1)
        self.n_used, self.n_empty = int(used.sum()), int((~used).sum())
        grid = feasible_alphas(self.n_used)
        self.table = {
            round(float(a), 12): (
                float(np.quantile(scores[fg], a)),
                float(np.quantile(scores[~fg], 1.0 - a)),
            )
            for a in grid
        }

    def _grid(self, alphas: Sequence[float] | None) -> np.ndarray:
        held = np.array(sorted(self.table))
        if alphas is None:
            return held
        return np.array([a for a in alphas if round(float(a), 12) in self.table])

    def bands(self, stats: ScanStats, alphas: Sequence[float] | None = None) -> Bands:
        grid = self._grid(alphas)
        taus = np.array([self.table[round(float(a), 12)] for a in grid])
        info = {"n_used": self.n_used, "n_empty": self.n_empty}
        return Bands.from_thresholds(stats.mean, grid, taus[:, 0], taus[:, 1], self.name, info)

    def predict_masks(self, data: SegmentationSet, alpha: float):
        outer, inner = self.table[round(float(alpha), 12)]
        inner = max(inner, outer)
        return [(s >= inner, s >= outer) for s in np.asarray(data.scores)]

    def summary(self, alpha: float) -> dict[str, float]:
        outer, inner = self.table[round(float(alpha), 12)]
        return {"tau_outer": outer, "tau_inner": inner}

    def to_state(self, alphas: Sequence[float] | None = None) -> dict:
        return {
            "method": self.name,
            "n_used": self.n_used,
            "n_empty": self.n_empty,
            "table": [[a, *self.table[a]] for a in sorted(self.table)],
        }

    @classmethod
    def from_state(cls, state: dict, arrays=None) -> ToyQuantile:
        self = cls()
        self.n_used, self.n_empty = int(state["n_used"]), int(state["n_empty"])
        self.table = {round(a, 12): (o, i) for a, o, i in state["table"]}
        return self

    @classmethod
    def state_levels(cls, state: dict) -> list[float]:
        return [float(r[0]) for r in state["table"]]

    @classmethod
    def guarantee_text(cls, alpha: float, beta: float | None = None) -> str:
        return f"{cls.label}: fixed quantiles at alpha {float(alpha):g}, no guarantee."


@pytest.fixture
def toy_method():
    """ToyQuantile registered for one test, and removed again afterwards."""
    register(NAME, ToyQuantile)
    yield ToyQuantile
    METHODS.pop(NAME, None)


@pytest.fixture(scope="module")
def toy_data() -> SegmentationSet:
    d = lesion_cases(60, size=16, n_samples=3, seed=5, empty_fraction=0.1)
    return SegmentationSet.from_samples(d["samples"], d["masks"], d["images"])


def test_register_checks_what_it_adds(toy_method):
    with pytest.raises(ValueError, match="not a ConformalMethod"):
        register("plain", dict)
    with pytest.raises(ValueError, match="registered as"):
        register("other", ToyQuantile)
    assert make_method(NAME).name == NAME and method_label(NAME) == "Toy quantile"


def test_toy_calibrate_evaluate_and_bundle(toy_method, toy_data, tmp_path):
    fitted = fit_methods([NAME], toy_data.subset(np.arange(30)), None)[NAME]
    assert fitted.n_used > 0
    bands = fitted.bands(ScanStats(toy_data.scores[30:]))
    inner, outer = bands.masks(0.1)
    assert not (inner & ~outer).any() and outer.any()

    report = evaluate(toy_data, ["crc", NAME], 0.1, splits=3, alphas=[0.2])
    toy = report["sweep"]["0.2"][NAME]
    assert 0.0 < toy["marginal_coverage"]["mean"] <= 1.0
    assert toy["tau_outer"]["mean"] >= report["methods"][NAME]["tau_outer"]["mean"]
    assert len(report["per_image_tpr"][NAME]) > 0

    path = save_bundle(tmp_path / "toy.npz", fitted, "model-x")
    header = read_bundle_header(path)
    assert header["method"] == NAME
    assert bundle_levels(header) == sorted(fitted.table)
    loaded = load_bundle(path, model_id="model-x")
    assert isinstance(loaded, ToyQuantile) and loaded.table == fitted.table
    again = loaded.bands(ScanStats(toy_data.scores[30:]))
    np.testing.assert_array_equal(again.labels(0.1), bands.labels(0.1))


def test_toy_through_the_cli(toy_method, toy_data, tmp_path, one_torch_thread):
    npz = tmp_path / "cases.npz"
    np.savez(npz, samples=toy_data.samples, masks=toy_data.masks, images=toy_data.images)
    out = tmp_path / "bundles"
    args = ["calibrate", "--samples", str(npz), "--methods", f"crc,{NAME}", "--out", str(out)]
    assert cli.main([*args, "--model-id", "model-x", "--quiet"]) == 0
    assert isinstance(load_bundle(out / f"{NAME}.npz", model_id="model-x"), ToyQuantile)
    report = tmp_path / "report.json"
    args = ["evaluate", "--samples", str(npz), "--methods", NAME, "--splits", "2"]
    assert cli.main([*args, "--json", str(report), "--quiet"]) == 0
    assert NAME in json.loads(report.read_text())["methods"]


@pytest.fixture
def toy_bundle(toy_method, builtin_model_id, tmp_path) -> object:
    """A ToyQuantile bundle for the bundled model, calibrated on synthetic score maps."""
    d = lesion_cases(40, size=32, n_samples=2, seed=7)
    method = ToyQuantile()
    method.calibrate(SegmentationSet(None, d["samples"].mean(axis=1), d["masks"]))
    return save_bundle(tmp_path / f"{NAME}.npz", method, builtin_model_id)


def test_toy_in_the_widget(toy_bundle, qtbot, viewer_widget, small_scan, notes):
    viewer, widget = viewer_widget  # opened after the toy was registered: it lists it
    assert NAME in widget.method_boxes
    open_scan(viewer, small_scan)
    widget.set_calibration("files", files=[toy_bundle])
    widget.set_methods([NAME])
    assert widget.selected_methods() == [NAME]
    widget.run()
    wait_done(qtbot, widget)
    assert not notes["error"], notes["error"]
    bands = widget.analysis().bands[NAME]
    assert bands.method == NAME and set(bands.alphas) <= set(DEFAULT_ALPHAS)
    widget.set_alpha(0.1)
    layer = widget.band_layer(NAME)
    assert layer is not None and layer.name.endswith("Toy quantile · bands")
    np.testing.assert_array_equal(np.asarray(layer.data), bands.labels(0.1))
    assert guarantee(NAME, 0.1) in widget.guarantee_label.text()
