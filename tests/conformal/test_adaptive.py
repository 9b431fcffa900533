"""AT and COAT: calibration, reduction to CRC, bands, persistence and bad input."""

import json
import threading

import numpy as np
import pytest
import torch

from napari_consign.calibration import BundleError, load_bundle, save_bundle
from napari_consign.conformal import CRC, ConformalInputError, SegmentationSet
from napari_consign.conformal.adaptive import AT, COAT, AdaptiveThresholds
from napari_consign.conformal.coat_loss import coat_loss
from napari_consign.conformal.errors import Cancelled
from napari_consign.conformal.metrics import coverage_gap, tpr
from napari_consign.conformal.registry import MethodOptions
from napari_consign.conformal.threshold_losses import fnr_curve
from napari_consign.conformal.threshold_predictor import PredictorConfig
from napari_consign.conformal.threshold_training import training_device
from napari_consign.synthetic import lesion_cases


def make_set(n, seed, size=24, empty_fraction=0.0):
    d = lesion_cases(n, size=size, n_samples=4, seed=seed, empty_fraction=empty_fraction)
    return SegmentationSet.from_samples(d["samples"], d["masks"], d["images"])


@pytest.fixture(scope="module")
def trained_coat():
    """A COAT trained long enough to be better than CRC (for the slow comparison)."""
    config = PredictorConfig(objective="coat", epochs=25, seed=0, patience=25)
    coat = COAT(config=config)
    coat.train(make_set(80, seed=10))
    return coat


@pytest.fixture(scope="module")
def small_coat():
    """A briefly trained COAT: enough for tests of its mechanics (bands, range, bundles)."""
    coat = COAT(config=PredictorConfig(objective="coat", epochs=2, seed=0))
    coat.train(make_set(20, seed=10))
    return coat


class ConstantPredictor:
    """Stands in for f_D: the same threshold for every unit and alpha."""

    def __init__(self, c):
        self.c = np.float32(c)

    def predict(self, inputs, alpha):
        return np.full(inputs.shape[0], self.c, dtype=np.float64)

    def check_alpha(self, alpha):
        pass


@pytest.mark.parametrize("c", [0.0, 0.3, 0.7, 1.0])
def test_constant_predictor_reduces_to_crc(c):
    cal = make_set(60, seed=1)
    method = AdaptiveThresholds()
    method.predictor = ConstantPredictor(c)
    method.fit_shifts(cal)
    crc = CRC().fit(cal.scores, cal.masks)
    for alpha in (0.05, 0.1, 0.2, 0.4):
        tau_in, tau_out = method.thresholds(cal, alpha)
        assert np.all(tau_out == crc.outer_threshold(alpha))
        assert np.all(tau_in == crc.thresholds(alpha).inner)


def test_shifted_risk_is_monotone():
    cal = make_set(40, seed=2)
    pairs = [(s, m != 0) for s, m in zip(cal.scores, cal.masks, strict=True)]
    curve = fnr_curve(pairs, np.random.default_rng(0).uniform(size=40))
    risks = curve.risk(np.linspace(-1.5, 1.5, 301))
    assert np.all(np.diff(risks) <= 1e-15)  # FNR non-increasing in t, so R(t) non-decreasing


@pytest.mark.slow
def test_coat_beats_crc_on_coverage_gap(trained_coat):
    """The COAT paper's claim on data whose difficulty varies: lower coverage gap than CRC,
    over 10 random calibration/test splits of independent data (f_D trained elsewhere).
    Reported as mean (SD) over the splits, as in the paper's tables."""
    pool = make_set(200, seed=11)
    rng = np.random.default_rng(0)
    gaps = {"crc": [], "coat": []}
    for _ in range(10):
        perm = rng.permutation(len(pool))
        cal, test = pool.subset(perm[:100]), pool.subset(perm[100:])
        trained_coat.fit_shifts(cal)
        crc = CRC().fit(cal.scores, cal.masks)
        for name, method in (("crc", crc), ("coat", trained_coat)):
            tprs = [
                tpr(o, y)
                for (_, o), y in zip(method.predict_masks(test, 0.1), test.masks, strict=True)
            ]
            gaps[name].append(coverage_gap(tprs, 0.1))
    stats = {k: (float(np.mean(v)), float(np.std(v, ddof=1))) for k, v in gaps.items()}
    print(
        "coverage gap over 10 splits, mean (SD): "
        + ", ".join(f"{k} {m:.4f} ({sd:.4f})" for k, (m, sd) in stats.items())
    )
    assert all(sd > 0 for _, sd in stats.values()), stats  # the splits do differ
    assert stats["coat"][0] < stats["crc"][0], stats


def test_bands_match_thresholds_in_2d_and_3d(small_coat):
    cal, test = make_set(60, seed=3), make_set(4, seed=4)
    small_coat.fit_shifts(cal)
    vol_scores, vol_images = test.scores, test.images
    bands3d = small_coat.map_bands(vol_scores, vol_images)
    bands2d = small_coat.map_bands(vol_scores[1], vol_images[1])
    assert bands3d.shape == vol_scores.shape and bands2d.shape == vol_scores[1].shape
    for alpha in (0.05, 0.1, 0.3):
        tau_in, tau_out = small_coat.thresholds(test, alpha)
        inner, outer = bands3d.masks(alpha)
        for z in range(4):
            np.testing.assert_array_equal(outer[z], vol_scores[z] >= tau_out[z])
            np.testing.assert_array_equal(inner[z], vol_scores[z] >= tau_in[z])
        np.testing.assert_array_equal(bands2d.masks(alpha)[1], outer[1])


def test_alpha_outside_trained_range(small_coat):
    small_coat.fit_shifts(make_set(30, seed=5))
    with pytest.raises(ConformalInputError, match=r"outside the range \[0.05, 0.5\]"):
        small_coat.shifts(0.6)


def test_empty_training_split():
    empty = make_set(10, seed=6, empty_fraction=1.0)
    with pytest.raises(ConformalInputError, match="no image with a non-empty mask"):
        COAT(config=PredictorConfig(epochs=1)).train(empty)
    with pytest.raises(ConformalInputError, match="needs a training split"):
        COAT().calibrate(make_set(20, seed=6), None)


def test_training_is_reproducible_and_cancellable():
    train = make_set(30, seed=7)
    config = PredictorConfig(objective="at", epochs=3, seed=5)
    a, b = AT(config=config), AT(config=config)
    a.train(train)
    b.train(train)
    for (ka, va), (_, vb) in zip(a.state_arrays().items(), b.state_arrays().items(), strict=True):
        np.testing.assert_array_equal(va, vb, err_msg=ka)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        AT(config=config).train.__func__(AT(config=config), train, cancel=stop)


def test_per_alpha_predictor_and_progress():
    seen = []
    config = PredictorConfig(conditioned=False, alpha=0.2, epochs=4, seed=1)
    coat = COAT(config=config)
    coat.train(make_set(30, seed=8), progress=lambda *a: seen.append(a))
    assert [s[0] for s in seen] == [1, 2, 3, 4]
    coat.fit_shifts(make_set(30, seed=9))
    assert coat.shifts(0.45).outer <= coat.shifts(0.2).outer  # any alpha can be calibrated


def test_bundle_round_trip(small_coat, tmp_path):
    cal, test = make_set(40, seed=12), make_set(5, seed=13)
    small_coat.fit_shifts(cal)
    path = save_bundle(tmp_path / "coat.npz", small_coat, model_id="model-A")
    loaded = load_bundle(path, model_id="model-A")
    for alpha in (0.05, 0.1, 0.5):
        for (a_in, a_out), (b_in, b_out) in zip(
            small_coat.predict_masks(test, alpha), loaded.predict_masks(test, alpha), strict=True
        ):
            np.testing.assert_array_equal(a_in, b_in)
            np.testing.assert_array_equal(a_out, b_out)
    with pytest.raises(BundleError, match="calibrated for model 'model-A'"):
        load_bundle(path, model_id="model-B")
    with pytest.raises(ConformalInputError, match="holds alpha in"):
        loaded.shifts(0.123)
    with pytest.raises(BundleError, match="exists"):
        save_bundle(path, small_coat, model_id="model-A")


def test_crc_bundle_round_trip(tmp_path):
    cal = make_set(40, seed=14)
    crc = CRC().fit(cal.scores, cal.masks)
    loaded = load_bundle(save_bundle(tmp_path / "crc.npz", crc, model_id="m"))
    assert loaded.thresholds(0.1) == crc.thresholds(0.1)
    assert (loaded.n_used, loaded.n_empty) == (crc.n_used, crc.n_empty)


@pytest.mark.parametrize("content", [b"plain text", b"PK\x03\x04 truncated"])
def test_bundle_that_is_not_a_bundle(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(BundleError, match=r"not a napari-consign calibration bundle|unreadable"):
        load_bundle(path)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(BundleError, match="not a napari-consign"):
        load_bundle(other)


def test_variance_channel_and_probability_maps_only():
    d = lesion_cases(30, size=16, n_samples=4, seed=15)
    with_images = SegmentationSet.from_samples(d["samples"], d["masks"], d["images"])
    maps_only = SegmentationSet.from_samples(d["samples"], d["masks"])
    coat = COAT(config=PredictorConfig(epochs=2, use_variance=True))
    coat.train(with_images)
    assert coat.config.in_channels == 3  # image, mean probability, MC std
    at = AT(config=PredictorConfig(epochs=2))
    at.train(maps_only)
    assert at.config.in_channels == 1
    at.fit_shifts(maps_only)
    assert len(at.predict_masks(maps_only, 0.2)) == 30


def test_defaults_follow_the_paper():
    """COAT's loss on probabilities with T = 0.05 by default; logit space is an option."""
    coat = COAT()
    assert (coat.config.score_space, coat.config.temperature) == ("probability", 0.05)
    logit = COAT(MethodOptions(score_space="logit"))
    assert (logit.config.score_space, logit.config.temperature) == ("logit", 0.5)
    assert COAT(MethodOptions(temperature=0.2)).config.temperature == 0.2
    with pytest.raises(ConformalInputError, match="temperature"):
        COAT(MethodOptions(temperature=0.0))
    with pytest.raises(ConformalInputError, match="score_space"):
        COAT(MethodOptions(score_space="log"))


def test_temperature_reaches_the_coat_loss(monkeypatch, one_torch_thread):
    from napari_consign.conformal import threshold_training

    seen = []

    def spy(probs, tau, truth, alpha, temperature, score_space):
        seen.append((temperature, score_space))
        return coat_loss(probs, tau, truth, alpha, temperature, score_space)

    monkeypatch.setattr(threshold_training, "coat_loss", spy)
    COAT(MethodOptions(temperature=0.123, epochs=1)).train(make_set(12, seed=16, size=16))
    assert seen and set(seen) == {(0.123, "probability")}


def test_old_logit_bundle_loads_and_predicts_identically(tmp_path, one_torch_thread):
    """Bundles store their config: a logit-space predictor (the former default) keeps its
    space and temperature, whatever the defaults are now, also without ``score_dtype``."""
    train, cal, test = make_set(20, seed=17), make_set(30, seed=18), make_set(5, seed=19)
    coat = COAT(MethodOptions(score_space="logit", epochs=2))
    coat.train(train)
    coat.fit_shifts(cal)
    path = save_bundle(tmp_path / "logit.npz", coat, model_id="m", alphas=[0.1, 0.2])
    with np.load(path, allow_pickle=False) as npz:
        payload = {k: npz[k] for k in npz.files}
    key = next(k for k in payload if not k.startswith("array/"))
    header = json.loads(str(payload[key]))
    del header["state"]["score_dtype"]  # written before thresholds knew the scores' dtype
    del header["checksum"]  # and before bundles carried a checksum
    payload[key] = np.array(json.dumps(header))
    old = tmp_path / "old.npz"
    np.savez_compressed(old, **payload)
    loaded = load_bundle(old, model_id="m")
    assert (loaded.config.score_space, loaded.config.temperature) == ("logit", 0.5)
    for alpha in (0.1, 0.2):
        for (a_in, a_out), (b_in, b_out) in zip(
            coat.predict_masks(test, alpha), loaded.predict_masks(test, alpha), strict=True
        ):
            np.testing.assert_array_equal(a_in, b_in)
            np.testing.assert_array_equal(a_out, b_out)


@pytest.fixture(scope="module")
def image_predictor():
    """A COAT predictor trained with one image channel and the MC variance."""
    coat = COAT(config=PredictorConfig(epochs=1, use_variance=True))
    coat.train(make_set(12, seed=20, size=16))
    coat.fit_shifts(make_set(20, seed=21, size=16))
    return coat


def test_missing_or_unexpected_inputs_are_named(image_predictor):
    d = lesion_cases(6, size=16, n_samples=4, seed=22)
    maps_only = SegmentationSet.from_samples(d["samples"], d["masks"])
    with pytest.raises(ConformalInputError, match=r"image channel.*no image was given"):
        image_predictor.predict_masks(maps_only, 0.2)
    no_samples = SegmentationSet(None, maps_only.scores, maps_only.masks, d["images"])
    with pytest.raises(ConformalInputError, match=r"standard deviation.*no variance"):
        image_predictor.predict_masks(no_samples, 0.2)
    two_channels = np.stack([d["images"], d["images"]], axis=1)
    wrong = SegmentationSet.from_samples(d["samples"], d["masks"], two_channels)
    with pytest.raises(ConformalInputError, match=r"1 image channel.*has 2"):
        image_predictor.predict_masks(wrong, 0.2)
    score, image = maps_only.scores[0], d["images"][0]
    variance = maps_only.foreground_variance()[0]
    image_predictor.map_bands(score, image, variance)  # what it was trained on
    with pytest.raises(ConformalInputError, match="no image was given"):
        image_predictor.map_bands(score, None, variance)
    with pytest.raises(ConformalInputError, match="no variance was given"):
        image_predictor.map_bands(score, image)
    with pytest.raises(ConformalInputError, match="must match pixel for pixel"):
        image_predictor.map_bands(score, image[:8], variance)
    at = AT(config=PredictorConfig(objective="at", epochs=1))
    at.train(maps_only)
    at.fit_shifts(maps_only)
    with pytest.raises(ConformalInputError, match=r"probability maps alone.*image was given"):
        at.map_bands(score, image)
    with pytest.raises(ConformalInputError, match="without the Monte-Carlo variance"):
        at.map_bands(score, None, variance)


def test_training_device(one_torch_thread):
    train = make_set(10, seed=23, size=16)
    COAT(MethodOptions(device="auto", epochs=1)).train(train)  # CUDA, MPS or CPU
    with pytest.raises(ConformalInputError, match="unknown device 'gpu0'"):
        COAT(MethodOptions(device="gpu0", epochs=1)).train(train)
    if not torch.cuda.is_available():
        with pytest.raises(ConformalInputError, match="CUDA is not available"):
            COAT(MethodOptions(device="cuda", epochs=1)).train(train)
    assert training_device("cpu") == torch.device("cpu")
