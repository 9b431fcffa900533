"""The widget's plain-Python side: analysis generator, lazy views, cases, guarantee wording.

No Qt and no viewer: these run without a display.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np
import pytest

from napari_consign import analysis as an
from napari_consign.calibration import BundleError
from napari_consign.cases import find_case_pairs
from napari_consign.conformal.errors import Cancelled, ConformalInputError
from napari_consign.conformal.method import ScanStats
from napari_consign.guarantee_text import guarantee, method_label, short_guarantee
from napari_consign.ui.band_views import BandsView, DisagreementView, PreviewView

N_S = 4


@pytest.fixture(scope="module")
def sampler():
    return an.build_sampler(an.ModelSpec(n_samples=N_S, device="cpu"))


@pytest.fixture(scope="module")
def small_volume():
    from napari_consign._sample_data import sample_data_path
    from napari_consign.io import read_volume

    vol = read_volume(sample_data_path("demo_scan.nii.gz")).array
    return vol[40:44]


@pytest.fixture
def reducer_spy(sampler, monkeypatch) -> list:
    """The reducer types of every ``sampler.iter_volume`` call (``monkeypatch.undo()`` stops
    recording)."""
    seen = []
    original = sampler.iter_volume

    def spy(volume, reducers=None, **kwargs):
        seen.append([type(r).__name__ for r in reducers])
        return original(volume, reducers, **kwargs)

    monkeypatch.setattr(sampler, "iter_volume", spy)
    return seen


def test_guarantee_wording():
    text = guarantee("crc", 0.1)
    assert "misses at most 10% of the lesion on average" in text
    assert "false positives are at most 10%" in text
    assert "a healthy scan with any inner band counting as a whole error" in text
    text = guarantee("consign", 0.05, beta=0.9)
    assert "the true segmentation lies in the set for at least 95% of scans" in text
    assert "visual summary" in text
    assert "97.5%" in guarantee("pixelwise", 0.025)
    assert method_label("coat") == "COAT" and method_label("pixelwise") == "Pixel-wise"
    assert "10%" in short_guarantee("coat", 0.1)


def test_run_analysis_visible_slice_first(sampler, small_volume, synthetic_methods):
    cal = an.CalibrationSpec(kind="given", methods=synthetic_methods)
    events = []
    result = an.run_to_completion(
        an.run_analysis(small_volume, sampler, cal, ["crc", "coat"], start_slice=2),
        events.append,
    )
    kinds = [type(e).__name__ for e in events if not isinstance(e, an.Progress)]
    assert kinds == ["ScanChecked", "MethodsReady", "SlicePreview", "MethodBands", "MethodBands"]
    preview = next(e for e in events if isinstance(e, an.SlicePreview))
    assert preview.z == 2 and set(preview.bands) == {"crc", "coat"}
    # the preview came right after the first sampled slice, before the others
    first = [i for i, e in enumerate(events) if isinstance(e, an.Progress)]
    sampled = [e for e in events if isinstance(e, an.Progress) and e.stage == "sampling"]
    assert sampled[0].done == 1 and events.index(preview) < first[-1]
    assert events.index(preview) < events.index(sampled[1])
    # the preview slice equals the whole-volume bands on that slice
    for name, b in preview.bands.items():
        full = result.bands[name]
        assert b.shape == (1, *small_volume.shape[1:])
        np.testing.assert_array_equal(b.labels(0.1)[0], full.labels(0.1)[2])
    assert result.mean.shape == small_volume.shape
    assert result.samples is None  # no method needed the raw samples


def test_run_analysis_cancel(sampler, small_volume, synthetic_methods):
    cal = an.CalibrationSpec(kind="given", methods=synthetic_methods)
    stop = threading.Event()
    gen = an.run_analysis(small_volume, sampler, cal, ["crc"], cancel=stop)
    seen = []
    with pytest.raises(Cancelled):
        for ev in gen:
            seen.append(ev)
            if isinstance(ev, an.SlicePreview):
                stop.set()
    assert not any(isinstance(e, an.MethodBands) for e in seen)


def test_bundles_checked_against_model(bundle_dir, foreign_bundle, builtin_model_id):
    spec = an.CalibrationSpec(kind="files", files=(bundle_dir / "crc.npz",))
    methods = an.load_calibrated(spec, ["crc"], builtin_model_id)
    assert methods["crc"].n_used > 0
    with pytest.raises(BundleError, match="calibrated for model"):
        an.load_calibrated(
            an.CalibrationSpec(kind="files", files=(foreign_bundle,)), ["crc"], builtin_model_id
        )
    with pytest.raises(BundleError, match="not coat"):
        an.load_calibrated(spec, ["coat"], builtin_model_id)


def test_shipped_bundle_lookup(shipped_bundles, builtin_model_id):
    assert an.bundled_bundle_path("crc") == shipped_bundles / "crc.npz"
    assert {"crc", "coat"} <= set(an.bundled_methods())
    with pytest.raises(BundleError, match="no shipped calibration"):
        an.load_calibrated(an.CalibrationSpec(), ["at"], builtin_model_id)


def test_method_failure_is_reported_not_raised(sampler, small_volume, fake_consign):
    """CONSIGN bundled with K = 2 needs N_s >= 3; with N_s = 2 it fails alone, clearly."""
    two = an.build_sampler(an.ModelSpec(n_samples=2, device="cpu"))
    cal = an.CalibrationSpec(kind="given", methods={"consign": fake_consign})
    events = []
    result = an.run_to_completion(
        an.run_analysis(small_volume[:2], two, cal, ["consign"]), events.append
    )
    assert "consign" in result.errors and "N_s" in result.errors["consign"]
    assert any(isinstance(e, an.MethodFailed) for e in events)


def test_consign_volume_bands_and_sampling(sampler, small_volume, fake_consign):
    cal = an.CalibrationSpec(kind="given", methods={"consign": fake_consign})
    events = []
    result = an.run_to_completion(
        an.run_analysis(small_volume, sampler, cal, ["consign"], start_slice=1), events.append
    )
    b = result.bands["consign"]
    assert b.shape == small_volume.shape
    np.testing.assert_allclose(b.alphas, [0.05, 0.1, 0.15, 0.2])
    inner, outer = b.masks(0.1)
    assert not np.any(inner & ~outer)
    assert b.snap(0.12) == pytest.approx(0.1)
    state = an.ImageAnalysis(shape=small_volume.shape, spacing_zyx=(2.0, 2.0, 2.0))
    for ev in events:
        state.apply(ev)
    state.finish(result)
    assert state.can_sample("consign")
    stack = state.plausible("consign", 0.1, n=3)
    assert stack.shape == (3, *small_volume.shape) and stack.dtype == np.uint8


def test_consign_run_streams_the_decomposition_not_the_samples(
    sampler, small_volume, fake_consign, monkeypatch, reducer_spy
):
    """CONSIGN's run keeps per slice only its top-K decomposition (never a KeepSamples
    reducer), and gives exactly the bands and plausible draws of the raw samples."""
    from napari_consign.conformal.consign_decomposition import DecompositionStack
    from napari_consign.models import KeepSamples

    seen = reducer_spy
    cal = an.CalibrationSpec(kind="given", methods={"consign": fake_consign})
    result = an.run_to_completion(
        an.run_analysis(small_volume, sampler, cal, ["consign"], start_slice=2)
    )
    assert seen == [["Moments", "TopK"]]
    assert result.samples is None
    stack = result.decomposition
    assert isinstance(stack, DecompositionStack) and len(stack) == small_volume.shape[0]
    assert stack.k == fake_consign.k and stack.n_samples == N_S
    assert stack.nbytes < small_volume.size * N_S * 4  # (K + 1) float32 maps, not N_s
    monkeypatch.undo()
    # the same seeded samples, kept raw: the same bands and the same plausible segmentations
    raw = sampler.run(small_volume, [KeepSamples(dtype=np.float32)])["samples"]
    expected = fake_consign.bands(ScanStats(raw.mean(axis=1), samples=raw))
    got = result.bands["consign"]
    np.testing.assert_array_equal(got.alphas, expected.alphas)
    for a in expected.alphas:
        for x, y in zip(got.masks(a), expected.masks(a), strict=True):
            np.testing.assert_array_equal(x, y)
    streamed = an.ImageAnalysis(shape=small_volume.shape)
    streamed.methods = {"consign": fake_consign}
    streamed.finish(result)
    kept = an.ImageAnalysis(shape=small_volume.shape)
    kept.methods = {"consign": fake_consign}
    kept.finish(replace(result, samples=raw, decomposition=None))
    assert streamed.can_sample("consign") and kept.can_sample("consign")
    np.testing.assert_array_equal(
        streamed.plausible("consign", 0.1, 4, 3), kept.plausible("consign", 0.1, 4, 3)
    )


@pytest.mark.parametrize("seed", range(2))
def test_consign_volume_bands_same_from_samples_and_streamed(fake_consign, seed):
    """Random 3D data: the TopK reducer's per-slice decomposition gives exactly the Bands of
    the raw samples ``(Z, N_s, H, W)``."""
    import torch

    from napari_consign.models import TopK

    rng = np.random.default_rng(seed)
    z, ns, h, w = 5, 9, 13, 17
    logits = rng.normal(0, 2, (z, 1, h, w)) + rng.normal(0, 1, (z, ns, h, w))
    samples = (1 / (1 + np.exp(-logits))).astype(np.float32)
    topk = TopK(fake_consign.k)
    topk.start(z, (h, w), ns)
    for i in rng.permutation(z):
        topk.update(int(i), torch.from_numpy(samples[i]))
    raw = fake_consign.bands(ScanStats(samples.mean(axis=1), samples=samples))
    streamed = fake_consign.bands(ScanStats(samples.mean(axis=1), samples=topk.result()["topk"]))
    assert raw.shape == streamed.shape == (z, h, w)
    np.testing.assert_array_equal(raw.alphas, streamed.alphas)
    assert raw.info == streamed.info
    for a in raw.alphas:
        for x, y in zip(raw.masks(a), streamed.masks(a), strict=True):
            np.testing.assert_array_equal(x, y)
    inner, outer = raw.masks(raw.alphas[-1])
    assert (outer & ~inner).any()  # not a trivial case


def test_numbers_against_truth(sampler, small_volume, synthetic_methods):
    cal = an.CalibrationSpec(kind="given", methods=synthetic_methods)
    result = an.run_to_completion(an.run_analysis(small_volume, sampler, cal, ["crc"]))
    state = an.ImageAnalysis(shape=small_volume.shape, spacing_zyx=(2.0, 2.0, 2.0))
    state.finish(result)
    inner, outer = result.bands["crc"].masks(0.2)
    truth = np.zeros(small_volume.shape, np.uint8)
    truth[outer] = 1
    truth[0, :5, :5] = 1  # a few voxels outside the outer band
    num = state.numbers("crc", 0.2, truth)
    assert num["outer_ml"] == pytest.approx(outer.sum() * 8 / 1000)
    assert num["ring_ml"] == pytest.approx((outer & ~inner).sum() * 8 / 1000)
    assert num["tpr"] == pytest.approx(outer.sum() / truth.sum())
    assert num["inner_fp_voxels"] == 0


def _threshold_bands(shape=(3, 8, 10), seed=0):
    from napari_consign.conformal.bands import Bands

    rng = np.random.default_rng(seed)
    score = rng.uniform(size=shape)
    alphas = np.array([0.05, 0.1, 0.2, 0.3])
    return Bands.from_thresholds(score, alphas, [0.2, 0.3, 0.4, 0.5], [0.9, 0.8, 0.7, 0.6])


@pytest.mark.parametrize(
    "key", [(1,), (1, slice(None), slice(None)), (slice(None), 3, slice(2, 6)), (2, 4, 5)]
)
def test_bands_view_matches_labels(key):
    b = _threshold_bands()
    view = BandsView(b, 0.11)
    assert view.alpha == pytest.approx(0.1)
    full = b.labels(0.1)
    np.testing.assert_array_equal(view[key], full[key])
    np.testing.assert_array_equal(np.asarray(view), full)
    assert view.shape == full.shape and view.dtype == np.uint8


def test_views_for_2d_images_and_mask_stacks():
    from napari_consign.conformal.bands import Bands

    b = _threshold_bands(shape=(1, 8, 10))
    view = BandsView(b, 0.2, squeeze_lead=True)
    assert view.shape == (8, 10)
    np.testing.assert_array_equal(np.asarray(view), b.labels(0.2)[0])
    rng = np.random.default_rng(1)
    outer = rng.uniform(size=(2, 3, 8, 10)) < 0.5
    inner = outer & (rng.uniform(size=outer.shape) < 0.5)
    stack = Bands.from_mask_stack(np.array([0.1, 0.2]), inner, outer, "consign")
    view = BandsView(stack, 0.19)
    np.testing.assert_array_equal(view[1], stack.labels(0.2)[1])
    preview = PreviewView((3, 8, 10), 2, _threshold_bands(shape=(1, 8, 10)), 0.1, False)
    arr = np.asarray(preview)
    assert not arr[:2].any() and arr.shape == (3, 8, 10)


def test_disagreement_view():
    a, b = _threshold_bands(seed=0), _threshold_bands(seed=1)
    view = DisagreementView(a, 0.1, b, 0.2)
    oa, ob = a.masks(0.1)[1], b.masks(0.2)[1]
    arr = np.asarray(view)
    np.testing.assert_array_equal(arr == 1, oa & ~ob)
    np.testing.assert_array_equal(arr == 2, ob & ~oa)
    np.testing.assert_array_equal(arr == 3, oa & ob)


def test_read_cases_npz_and_folder(tmp_path):
    import SimpleITK as sitk

    rng = np.random.default_rng(0)
    images = rng.uniform(size=(30, 16, 16)).astype(np.float32)
    masks = (rng.uniform(size=(30, 16, 16)) > 0.8).astype(np.uint8)
    np.savez(tmp_path / "cases.npz", images=images, masks=masks)
    cases = an.read_cases(tmp_path / "cases.npz", max_cases=12)
    assert cases.n_units == 12 and cases.n_train == 6  # half as many training units
    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(2):
        sitk.WriteImage(sitk.GetImageFromArray(images[:5]), str(folder / f"s{i}.nii.gz"))
        sitk.WriteImage(sitk.GetImageFromArray(masks[:5]), str(folder / f"s{i}_mask.nii.gz"))
    assert len(find_case_pairs(folder)) == 2
    cases = an.read_cases(folder, max_cases=100)
    assert cases.n_units + cases.n_train == 10
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConformalInputError, match="no image \\+ mask"):
        an.read_cases(tmp_path / "empty", max_cases=5)
    np.savez(tmp_path / "bad.npz", x=images)
    with pytest.raises(ConformalInputError, match="'images'"):
        an.read_cases(tmp_path / "bad.npz")


def test_calibrate_now_crc_and_pixelwise(sampler, tmp_path, builtin_model_id):
    from napari_consign._sample_data import sample_data_path
    from napari_consign.calibration import load_bundle

    cases = an.read_cases(sample_data_path("cases2d.npz"), max_cases=16)
    fitted = an.run_to_completion(an.calibrate_methods(sampler, cases, ["crc", "pixelwise"]))
    crc = fitted["crc"]  # the calibration split ends with healthy cases
    assert crc.n_used + crc.n_empty == 16 and fitted["pixelwise"].n_used == crc.n_used
    written, problems = an.save_bundles({"crc": crc}, tmp_path, builtin_model_id)
    assert not problems
    assert load_bundle(written[0], model_id=builtin_model_id).n_used == crc.n_used


@pytest.mark.slow
def test_calibrate_now_consign_streams_and_matches_raw_samples(sampler, monkeypatch, reducer_spy):
    """Calibrating CONSIGN now keeps per unit only its decomposition (TopK), and gives the
    lambda_i* of a CONSIGN fitted on the same units' raw samples."""
    from functools import partial

    from napari_consign._sample_data import sample_data_path
    from napari_consign.conformal.consign import CONSIGN
    from napari_consign.conformal.consign_search_settings import SearchSettings
    from napari_consign.conformal.registry import MethodOptions
    from napari_consign.models import KeepSamples

    fast = SearchSettings(n_lhs=32, n_starts=2, max_steps=30, patience=10)
    quick = partial(CONSIGN, search=fast, alphas=[0.3])  # the default search takes minutes
    monkeypatch.setattr(an.calibrate_now, "method_class", lambda name: quick)
    seen = reducer_spy
    cases = an.read_cases(sample_data_path("cases2d.npz"), max_cases=6)
    fitted = an.run_to_completion(an.calibrate_methods(sampler, cases, ["consign"]))["consign"]
    assert seen == [["Moments", "TopK"]]
    monkeypatch.undo()
    raw = sampler.run(cases.images[0], [KeepSamples(dtype=np.float32)])["samples"]
    ref = quick(MethodOptions(k=fitted.k, seed=0, device="cpu")).fit(raw, cases.masks[0])
    assert fitted.n_used == ref.n_used
    np.testing.assert_array_equal(fitted.lambda_stars(0.3), ref.lambda_stars(0.3))


def test_ensemble_of_model_files():
    from napari_consign._sample_data import sample_data_path

    pt = sample_data_path("unet_lesions.pt")
    spec = an.ModelSpec(paths=(pt, pt), device="cpu")
    assert spec.describe == "ensemble of 2 models"
    sampler = an.build_sampler(spec)
    assert sampler.mode == "ensemble" and sampler.n_samples == 2
    single = an.build_sampler(an.ModelSpec(paths=(pt,), device="cpu", n_samples=3))
    assert single.identity == json_sha(pt.with_suffix(".json"))


def json_sha(path):
    import json

    return json.loads(path.read_text())["sha256"]


def test_bundles_checked_against_the_sampling(tmp_path, synthetic_methods, builtin_model_id):
    """The widget's path refuses a bundle made with another N_s or sampling mode, as predict
    does (the guarantee is stated for the calibrated sampling)."""
    from napari_consign.analysis import CalibrationSpec, ModelSpec, load_calibrated
    from napari_consign.calibration import BundleError, save_bundle

    path = save_bundle(
        tmp_path / "crc.npz",
        synthetic_methods["crc"],
        builtin_model_id,
        extra={"n_samples": 10, "mode": "mc_dropout"},
    )
    spec = CalibrationSpec(kind="files", files=(path,))
    same = ModelSpec(n_samples=10, mode="mc_dropout")
    assert set(load_calibrated(spec, ["crc"], builtin_model_id, same)) == {"crc"}
    with pytest.raises(BundleError, match="N_s = 10"):
        load_calibrated(spec, ["crc"], builtin_model_id, ModelSpec(n_samples=4))
    with pytest.raises(BundleError, match="sampling mode 'mc_dropout'"):
        load_calibrated(spec, ["crc"], builtin_model_id, ModelSpec(n_samples=10, mode="tta"))
