"""Thresholds on float32 score maps with ties: exact sets, whatever precision compares them.

Regression: the inner threshold is ``nextafter(v*, inf)`` just above an infeasible tie level
``v*``. Kept as a float64 Python float and compared with a float32 map, NumPy 2 compares in
float32, where it rounds back to ``v*``: the whole tie level re-entered the inner band (on the
data below the mean nested inner test loss was 0.34 at alpha 0.2, and the calibration inner
risk exceeded r* in every trial). Thresholds are now rounded up to the calibration scores'
dtype and every mask goes through :func:`threshold_mask`, which is exact for any dtype.
"""

import numpy as np
import pytest

from napari_consign.conformal import CRC, SegmentationSet
from napari_consign.conformal.adaptive import AdaptiveThresholds
from napari_consign.conformal.metrics import fnr, inner_loss
from napari_consign.conformal.threshold_losses import (
    inner_thresholds,
    outer_thresholds,
    round_up_to,
    threshold_mask,
)
from napari_consign.conformal.threshold_predictor import PredictorConfig

ALPHA, N_CAL = 0.2, 20


def quantised_units(rng, n, size=32):
    """1D units whose float32 scores are multiples of 1/8 (many ties), difficulty varies."""
    m = rng.integers(4, 12, size=n)
    fg = np.arange(size)[None, :] < m[:, None]
    shift = rng.uniform(0.0, 0.5, size=(n, 1))
    p = np.where(fg, rng.normal(0.45 + shift, 0.2, (n, size)), rng.normal(0.3, 0.2, (n, size)))
    return (np.round(np.clip(p, 0, 1) * 8) / 8).astype(np.float32), fg


def r_star(alpha, n):
    return ((n + 1) * alpha - 1) / n


@pytest.mark.parametrize("seed", range(5))
def test_calibration_risks_within_bound_and_every_consumer_agrees(seed):
    scores, masks = quantised_units(np.random.default_rng(seed), N_CAL)
    crc = CRC().fit(scores, masks)
    alphas = np.array([0.1, 0.2, 0.3, 0.4])
    for alpha in alphas:
        t = crc.thresholds(alpha)
        raw = crc.raw_inner_threshold(alpha)
        for tau in (t.inner, t.outer, raw):  # representable in float32: same in any precision
            assert float(np.float32(tau)) == tau
        exact_raw = [s.astype(np.float64) >= raw for s in scores]
        assert np.mean([inner_loss(i, y) for i, y in zip(exact_raw, masks, strict=True)]) <= (
            r_star(alpha, N_CAL) + 1e-12
        )
        naive_raw = [s >= raw for s in scores]  # a Python float, compared in float32
        for a, b in zip(naive_raw, exact_raw, strict=True):
            np.testing.assert_array_equal(a, b)
        outer = [s >= t.outer for s in scores]
        assert np.mean([fnr(o, y) for o, y in zip(outer, masks, strict=True)]) <= (
            r_star(alpha, N_CAL) + 1e-12
        )
        data = SegmentationSet(None, scores, masks.astype(np.uint8))
        for k, (i, o) in enumerate(crc.predict_masks(data, alpha)):
            p_in, p_out = crc.predict(scores[k], alpha)
            b_in, b_out = crc.map_bands(scores[k], alphas).masks(alpha)
            want_in = scores[k].astype(np.float64) >= t.inner
            want_out = scores[k].astype(np.float64) >= t.outer
            for got in (i, p_in, b_in):
                np.testing.assert_array_equal(got, want_in)
            for got in (o, p_out, b_out):
                np.testing.assert_array_equal(got, want_out)


def test_bundle_with_float64_thresholds_still_predicts_exactly():
    """Bundles written before the fix store ``nextafter(v*, inf)`` in float64."""
    scores, masks = quantised_units(np.random.default_rng(7), N_CAL)
    crc = CRC().fit(scores, masks)
    old = crc.to_state([ALPHA])
    del old["score_dtype"]
    ((a, t_out, t_in),) = old["table"]
    v_star = np.float64(np.nextafter(np.float32(t_in), np.float32(-1)))
    old["table"] = [[a, t_out, float(np.nextafter(v_star, 2.0))]]
    loaded = CRC.from_state(old)
    assert loaded.raw_inner_threshold(ALPHA) != crc.raw_inner_threshold(ALPHA)  # float64 form
    for s in scores:
        for got, want in zip(loaded.predict(s, ALPHA), crc.predict(s, ALPHA), strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.slow
def test_mean_test_losses_stay_within_alpha():
    """CRC's guarantee on tied float32 scores: mean test loss <= alpha + 3 SE (1000 draws)."""
    rng = np.random.default_rng(0)
    trials, n_test = 1000, 20
    nested, raw_inner, outer = [], [], []
    for _ in range(trials):
        s, y = quantised_units(rng, N_CAL + n_test)
        crc = CRC().fit(s[:N_CAL], y[:N_CAL])
        data = SegmentationSet(None, s[N_CAL:], y[N_CAL:].astype(np.uint8))
        raw = crc.raw_inner_threshold(ALPHA)
        rows = [
            (inner_loss(i, g), inner_loss(x >= raw, g), fnr(o, g))
            for (i, o), x, g in zip(
                crc.predict_masks(data, ALPHA), s[N_CAL:], y[N_CAL:], strict=True
            )
        ]
        nested.append(np.mean([r[0] for r in rows]))
        raw_inner.append(np.mean([r[1] for r in rows]))
        outer.append(np.mean([r[2] for r in rows]))
    for losses in (nested, raw_inner, outer):
        x = np.asarray(losses)
        assert x.mean() <= ALPHA + 3 * x.std(ddof=1) / np.sqrt(trials), x.mean()


def test_round_up_to_dtype():
    v = np.float32(0.375)
    up = float(np.nextafter(np.float64(v), 2))
    assert round_up_to(up, np.float32) == float(np.nextafter(v, np.float32(2)))
    assert round_up_to(float(v), np.float32) == float(v)
    assert round_up_to(up, np.float64) == up
    assert round_up_to(5e-324, np.float32) == float(np.nextafter(np.float32(0), np.float32(1)))
    s = np.array([v, np.nextafter(v, np.float32(2))], dtype=np.float32)
    np.testing.assert_array_equal(threshold_mask(s, up), [False, True])
    np.testing.assert_array_equal(threshold_mask(s.astype(np.float16), 0.3751), [False, False])
    np.testing.assert_array_equal(threshold_mask(s.astype(np.float64), up), [False, True])


def test_shifted_thresholds_invert_the_keys_exactly():
    """With per-unit offsets, the rounding in ``offset - p`` cannot move a voxel across."""
    rng = np.random.default_rng(3)
    off = rng.uniform(0.05, 0.95, 2000).astype(np.float32).astype(np.float64)
    p = (10.0 ** rng.uniform(-14, 0, 2000)).astype(np.float32).astype(np.float64)

    def prev32(x):
        return np.nextafter(x.astype(np.float32), np.float32(-1)).astype(np.float64)

    # Outer: key off - p; the set at shift t is {q : off - q <= t}; its threshold is p itself.
    key = off - p
    tau = np.array([outer_thresholds(o, k, np.float32) for o, k in zip(off, key, strict=True)])
    assert np.all(tau <= p) and np.all(off - tau <= key)  # p's own level is in the set ...
    below = prev32(tau)
    assert np.all((tau == 0) | (off - below > key))  # ... and nothing below it
    # Inner: key p - off; the set at infimum x* is {q : q - off > x*}.
    key = p - off
    tau = np.array([inner_thresholds(o, k, np.float32) for o, k in zip(off, key, strict=True)])
    assert np.all(tau > p) and np.all(tau - off > key)  # the infimum's level is out ...
    below = prev32(tau)
    assert np.all((tau == 0) | (below - off <= key))  # ... and everything above it is in


class _FixedPredictor:
    """A fixed f_D: thresholds from the inputs (distinct per unit), independent of alpha."""

    def _tau(self, inputs):
        x = inputs.reshape(inputs.shape[0], -1).double().mean(1).numpy()
        return (0.2 + 0.6 * np.abs(np.sin(37.0 * x))).astype(np.float32).astype(np.float64)

    def predict(self, inputs, alpha):
        return self._tau(inputs)

    def predict_grid(self, inputs, alphas):
        return np.broadcast_to(self._tau(inputs), (len(alphas), inputs.shape[0])).copy()

    def check_alpha(self, alpha):
        pass


@pytest.mark.parametrize("seed", range(3))
def test_adaptive_shifts_on_tied_float32_scores(seed):
    """AT/COAT calibration on tied float32 maps: risks within r*, masks agree with bands."""
    rng = np.random.default_rng(seed)
    s, y = quantised_units(rng, 30, size=36)
    s, y = s.reshape(30, 6, 6), y.reshape(30, 6, 6).astype(np.uint8)
    cal = SegmentationSet(None, s, y)
    method = AdaptiveThresholds(config=PredictorConfig(in_channels=1))
    method.predictor = _FixedPredictor()
    method.fit_shifts(cal)
    alphas = np.array([0.1, 0.2, 0.3])
    for alpha in alphas:
        shift = method.shifts(alpha)
        tau_hat = method.predictor.predict(method._inputs(cal), alpha)
        raw_in = inner_thresholds(tau_hat, shift.inner, np.float32)
        raw = [x.astype(np.float64) >= t for x, t in zip(s, raw_in, strict=True)]
        risk = np.mean([inner_loss(i, g) for i, g in zip(raw, y, strict=True)])
        assert risk <= r_star(alpha, 30) + 1e-12
        tau_in, tau_out = method.thresholds(cal, alpha)
        for t in (*tau_in, *tau_out):
            assert float(np.float32(t)) == t
        masks = method.predict_masks(cal, alpha)
        assert np.mean([fnr(o, g) for (_, o), g in zip(masks, y, strict=True)]) <= (
            r_star(alpha, 30) + 1e-12
        )
        for k, (i, o) in enumerate(masks):
            b_in, b_out = method.map_bands(s[k], alphas=alphas).masks(alpha)
            np.testing.assert_array_equal(i, b_in)
            np.testing.assert_array_equal(o, b_out)
            np.testing.assert_array_equal(i, s[k].astype(np.float64) >= tau_in[k])
