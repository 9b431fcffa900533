"""CONSIGN decomposition, box, envelope and sampling (docs/methods.md §5.1, 5.2, 5.5, 9 item 9)."""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from napari_consign.conformal import ConformalInputError, MethodOptions
from napari_consign.conformal.consign import CONSIGN, ENVELOPE_NOTE
from napari_consign.conformal.consign_decomposition import (
    Decomposition,
    DecompositionStack,
    as_channels,
    decompose_stack,
    decompose_units,
)
from napari_consign.conformal.consign_envelope import (
    _max_min_margin,
    envelope,
    label_envelopes,
    sample_labels,
)
from napari_consign.conformal.consign_search_settings import SearchSettings
from napari_consign.synthetic import lesion_cases

FAST = SearchSettings(n_lhs=64, n_starts=4, max_steps=100, patience=20)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def multiclass_samples(n, n_samples, n_classes, size, seed):
    """Class probabilities ``(n, N_s, L, H, W)`` from smooth random logits, and label masks."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 2, (n, 1, n_classes, size, size))
    logits = base + rng.normal(0, 1, (n, n_samples, n_classes, size, size))
    p = np.exp(logits - logits.max(axis=2, keepdims=True))
    p /= p.sum(axis=2, keepdims=True)
    masks = np.argmax(base[:, 0] + rng.normal(0, 1, base[:, 0].shape), axis=1)
    return p, masks


def random_box(d: Decomposition, rng, scale=1.0):
    m, rho = d.centre_and_radius(0.2)
    lam = scale * rng.uniform(0.05, 0.5)
    return m - lam * rho, m + lam * rho


def vertices(lower, upper):
    return np.array(list(itertools.product(*zip(lower, upper, strict=True))))


# -- decomposition -------------------------------------------------------------------------


def test_full_rank_reconstructs_samples():
    d = lesion_cases(3, size=12, n_samples=6, seed=1)
    for unit, dec in zip(d["samples"], decompose_units(d["samples"], 5, binary=True), strict=True):
        x = as_channels(unit, True).reshape(6, -1)
        rebuilt = dec.mean + dec.coefficients.T @ dec.components.astype(np.float64)
        np.testing.assert_allclose(rebuilt, x, atol=1e-5)
        # coefficients are the projections <u_k, s_n - mu>; components orthonormal
        u = dec.components.astype(np.float64)
        np.testing.assert_allclose(u @ u.T, np.eye(5), atol=1e-5)
        np.testing.assert_allclose(dec.coefficients, u @ (x - x.mean(0)).T, atol=1e-4)
        assert np.all(np.diff(dec.singular) <= 1e-12)


def test_multiclass_flattens_label_first():
    p, _ = multiclass_samples(1, 5, 3, 6, seed=2)
    dec = decompose_units(p, 4, binary=False)[0]
    np.testing.assert_allclose(dec.mean, p[0].mean(axis=0).reshape(-1), atol=1e-6)
    c = dec.coefficients[:, 2]
    np.testing.assert_allclose(dec.scores(c), p[0, 2], atol=1e-5)


def test_box_formula_includes_singular_value_factor():
    d = lesion_cases(1, size=10, n_samples=8, seed=3)
    dec = decompose_units(d["samples"], 3, binary=True)[0]
    alpha, lam = 0.2, 0.7
    a = np.quantile(dec.coefficients, alpha / 2, axis=1, method="linear")
    b = np.quantile(dec.coefficients, 1 - alpha / 2, axis=1, method="linear")
    lower, upper = dec.box(alpha, lam)
    m, h = (a + b) / 2, (b - a) / 2
    np.testing.assert_allclose(lower, m - lam * dec.singular * h)
    np.testing.assert_allclose(upper, m + lam * dec.singular * h)


# -- envelope ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_binary_closed_form_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    d = lesion_cases(1, size=12, n_samples=7, seed=seed + 10)
    k = 2 + seed % 3
    dec = decompose_units(d["samples"], k, binary=True)[0]
    lower, upper = random_box(dec, rng, scale=20.0)
    inner, outer = envelope(dec, lower, upper)
    fg_vertices = dec.labels(vertices(lower, upper)) == 1
    np.testing.assert_array_equal(outer, fg_vertices.any(axis=0))
    np.testing.assert_array_equal(inner, fg_vertices.all(axis=0))
    assert (outer & ~inner).any()  # a non-trivial case
    fg_random = dec.labels(lower + rng.uniform(size=(300, k)) * (upper - lower)) == 1
    assert not np.any(fg_random & ~outer) and not np.any(~fg_random & inner)


@pytest.mark.parametrize("seed", range(3))
def test_multiclass_envelopes_agree_with_vertices_and_samples(seed):
    rng = np.random.default_rng(seed)
    p, _ = multiclass_samples(1, 6, 4, 8, seed=seed)
    dec = decompose_units(p, 3, binary=False)[0]
    lower, upper = random_box(dec, rng, scale=10.0)
    points = np.concatenate(
        [vertices(lower, upper), lower + rng.uniform(size=(500, 3)) * (upper - lower)]
    )
    labels = dec.labels(points)
    inner, outer = envelope(dec, lower, upper)
    may, must = label_envelopes(dec, lower, upper)
    seen = np.stack([(labels == lab).any(axis=0) for lab in range(4)])
    always = np.stack([(labels == lab).all(axis=0) for lab in range(4)])
    assert not np.any(seen & ~may) and not np.any(must & ~always)
    # "some non-background label may win" is exact: a linear max over the box (at a vertex)
    np.testing.assert_array_equal(outer, may[1:].any(axis=0))
    np.testing.assert_array_equal(inner, ~may[0])
    assert not np.any((labels != 0) & ~outer) and not np.any((labels == 0) & inner)
    assert (may.sum(axis=0) > 1).any()  # a non-trivial case


def test_lp_margin_matches_linprog():
    rng = np.random.default_rng(5)
    n_m, k, n_p = 3, 4, 25
    offset = rng.normal(0, 1, (n_m, n_p))
    slope = rng.normal(0, 1, (n_m, k, n_p))
    m, r = rng.normal(0, 1, k), rng.uniform(0.1, 1.0, k)
    r[1] = 0.0  # a degenerate direction
    got = _max_min_margin(offset, slope, m, r)
    for p in range(n_p):
        # max t  s.t.  t <= offset_j + slope_j . c,  c in [m - r, m + r]
        a_ub = np.hstack([-slope[:, :, p], np.ones((n_m, 1))])
        res = linprog(
            np.r_[np.zeros(k), -1.0],
            A_ub=a_ub,
            b_ub=offset[:, p],
            bounds=[(m[i] - r[i], m[i] + r[i]) for i in range(k)] + [(None, None)],
        )
        assert res.status == 0
        assert got[p] == pytest.approx(-res.fun, abs=1e-8)


def test_sign_flips_leave_masks_and_samples_unchanged():
    rng = np.random.default_rng(7)
    d = lesion_cases(1, size=12, n_samples=6, seed=4)
    dec = decompose_units(d["samples"], 3, binary=True)[0]
    flip = np.array([1.0, -1.0, -1.0])
    flipped = Decomposition(
        dec.mean,
        (dec.components * flip[:, None]).astype(np.float32),
        dec.singular,
        dec.coefficients * flip[:, None],
        dec.n_classes,
        dec.spatial,
    )
    for alpha, lam in [(0.1, 0.3), (0.3, 2.0)]:
        box, box_f = dec.box(alpha, lam), flipped.box(alpha, lam)
        np.testing.assert_allclose(box_f[0], np.where(flip < 0, -box[1], box[0]))
        for a, b in zip(envelope(dec, *box), envelope(flipped, *box_f), strict=True):
            np.testing.assert_array_equal(a, b)
        c = box[0] + rng.uniform(size=(50, 3)) * (box[1] - box[0])
        np.testing.assert_array_equal(dec.labels(c), flipped.labels(c * flip))


def test_sets_are_nested_in_lambda():
    d = lesion_cases(2, size=12, n_samples=8, seed=5)
    for dec in decompose_units(d["samples"], 4, binary=True):
        previous = None
        for lam in [0.0, 0.01, 0.1, 0.5, 1.0, 3.0]:
            lower, upper = dec.box(0.1, lam)
            inner, outer = envelope(dec, lower, upper)
            if previous is not None:
                p_lower, p_upper, p_inner, p_outer = previous
                assert np.all(lower <= p_lower) and np.all(upper >= p_upper)  # boxes grow
                assert not np.any(p_outer & ~outer) and not np.any(inner & ~p_inner)
            previous = (lower, upper, inner, outer)
        lower, upper = dec.box(0.1, 0.0)  # lam -> 0: the single prediction P(mu + U m)
        np.testing.assert_array_equal(envelope(dec, lower, upper)[1], dec.labels(lower) == 1)


def test_every_sample_lies_between_inner_and_outer():
    d = lesion_cases(2, size=12, n_samples=8, seed=6)
    rng = np.random.default_rng(0)
    for dec in decompose_units(d["samples"], 4, binary=True):
        lower, upper = dec.box(0.1, 1.5)
        inner, outer = envelope(dec, lower, upper)
        drawn = sample_labels(dec, lower, upper, 400, rng)
        assert drawn.shape == (400, 12, 12) and drawn.dtype == np.uint8
        assert not np.any(drawn.astype(bool) & ~outer) and not np.any(~drawn.astype(bool) & inner)


# -- method --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted():
    d = lesion_cases(36, size=12, n_samples=6, seed=8)
    m = CONSIGN(MethodOptions(beta=0.8, k=3), search=FAST, alphas=[0.1, 0.2, 0.3])
    m.fit(d["samples"][:30], d["masks"][:30])  # alpha-specific work happens lazily, in tests
    return m, d["samples"][30:], d["masks"][30:]


def test_memory_keeps_only_float32_top_k(fitted):
    m, _, _ = fitted
    checker = m._checker
    assert checker._comps.dtype == torch.float32 and checker._mean.dtype == torch.float32
    assert tuple(checker._comps.shape) == (30, 3, 2 * 12 * 12)
    big = [
        name
        for name, value in vars(m).items()
        if isinstance(value, np.ndarray) and value.size > 30 * 3 * 6
    ]
    assert big == []  # nothing per-pixel besides the checker's float32 components


def test_bands_snap_to_grid_and_say_they_are_an_envelope(fitted):
    m, samples, _ = fitted
    bands = m.unit_bands(samples[0])
    np.testing.assert_allclose(bands.alphas, [0.1, 0.2, 0.3])
    assert bands.info["kind"] == ENVELOPE_NOTE and "not a conformal set" in ENVELOPE_NOTE
    for alpha in bands.alphas:
        inner, outer = bands.masks(alpha)
        exp_inner, exp_outer = m.predict(samples[0], alpha)
        np.testing.assert_array_equal(outer, exp_outer)
        np.testing.assert_array_equal(inner, exp_inner & exp_outer)
    drawn = m.sample(samples[0], 0.2, 50, seed=1)
    inner, outer = m.predict(samples[0], 0.2)
    assert not np.any(drawn.astype(bool) & ~outer) and not np.any(~drawn.astype(bool) & inner)


def test_state_round_trip_predicts_the_same(fitted):
    m, samples, _ = fitted
    m.calibrate_alphas()
    loaded = CONSIGN.from_state(m.to_state())
    for alpha in (0.1, 0.3):
        assert loaded.lambda_hat(alpha) == m.lambda_hat(alpha)
        for a, b in zip(
            loaded.predict(samples[1], alpha), m.predict(samples[1], alpha), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ConformalInputError, match="calibration bundle"):
        loaded.lambda_hat(0.25)


def test_multiclass_fit_and_label_masks():
    p, masks = multiclass_samples(24, 6, 3, 6, seed=9)
    m = CONSIGN(MethodOptions(beta=0.5, k=2), search=FAST).fit(p[:20], masks[:20])
    lam = m.lambda_hat(0.2)
    assert np.isfinite(lam)
    may, must = m.label_masks(p[20], 0.2)
    inner, outer = m.predict(p[20], 0.2)
    assert may.shape == must.shape == (3, 6, 6)
    assert np.all(must.sum(axis=0) <= 1) and np.all(may.sum(axis=0) >= 1)
    np.testing.assert_array_equal(inner, ~may[0])
    drawn = m.sample(p[20], 0.2, 100)
    assert not np.any((drawn != 0) & ~outer) and not np.any((drawn == 0) & inner)


# -- streamed decompositions ---------------------------------------------------------------


def _stream_state(k: int, alphas=(0.05, 0.1, 0.2, 0.3)) -> dict:
    """A calibrated CONSIGN's state (as from a bundle), with hand-made lambda_i* tables."""
    rng = np.random.default_rng(0)
    return {
        "method": "consign",
        "beta": 0.9,
        "k": k,
        "n_classes": 2,
        "binary": True,
        "lam_step": 0.01,
        "lam_max": 5.0,
        "n_used": 40,
        "n_empty": 0,
        "alphas": list(alphas),
        "lambda_stars": {str(a): np.sort(rng.uniform(0.2, 3.0, 40)).tolist() for a in alphas},
    }


def random_volume_samples(z, n_samples, h, w, seed):
    """Float32 foreground probabilities ``(Z, N_s, H, W)`` of a random 3D scan: a smooth random
    logit field per slice plus per-sample noise, so slices have structure and uncertainty."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.stack(
        [
            3.0 - np.hypot(yy - rng.uniform(0, h), xx - rng.uniform(0, w)) / rng.uniform(1, 3)
            for _ in range(z)
        ]
    )
    logits = base[:, None] + rng.normal(0, 1.5, (z, n_samples, h, w))
    logits += rng.normal(0, 1.0, (z, n_samples, 1, 1))  # a global shift per sample
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


@pytest.mark.parametrize("seed", range(3))
def test_streamed_decomposition_gives_exactly_the_same_bands_and_samples(seed):
    """CONSIGN from the per-slice streamed decomposition (what the sampler keeps of a 3D scan)
    equals CONSIGN from the raw samples: same Bands at every level, same plausible draws."""
    z, ns, h, w, k = 6, 12, 14, 11, 3
    samples = random_volume_samples(z, ns, h, w, seed)
    stack = DecompositionStack.empty(z, (h, w), k, ns)
    for i in np.random.default_rng(seed).permutation(z):  # any slice order, one at a time
        stack.fill(i, samples[i][None])
    assert stack.mean.shape == (z, 1, h, w) and stack.components.shape == (z, k, 1, h, w)
    assert stack.nbytes == DecompositionStack.nbytes_for(z, (h, w), k, ns)
    m = CONSIGN.from_state(_stream_state(k))
    nontrivial = 0
    for i in range(z):
        raw, streamed = m.unit_bands(samples[i]), m.unit_bands(stack.unit(i))
        np.testing.assert_array_equal(raw.alphas, streamed.alphas)
        assert raw.info == streamed.info and raw.shape == streamed.shape == (h, w)
        for a in raw.alphas:
            for x, y in zip(raw.masks(a), streamed.masks(a), strict=True):
                np.testing.assert_array_equal(x, y)
            inner, outer = raw.masks(a)
            nontrivial += int((outer & ~inner).any())
        np.testing.assert_array_equal(
            m.sample(samples[i], 0.1, 20, seed=i), m.sample(stack.unit(i), 0.1, 20, seed=i)
        )
    assert nontrivial > 0  # the bands are not all empty or all full


def test_stack_units_equal_decompose_units_multiclass():
    p, _ = multiclass_samples(4, 6, 3, 5, seed=3)
    stack = DecompositionStack.empty(4, (5, 5), 3, 6, n_classes=3, binary=False)
    for i in range(4):
        stack.fill(i, p[i : i + 1])
    for a, b in zip(stack.units(), decompose_units(p, 3, binary=False), strict=True):
        for f in ("mean", "components", "singular", "coefficients"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        assert (a.n_classes, a.spatial) == (b.n_classes, b.spatial) == (3, (5, 5))
    with pytest.raises(ConformalInputError, match="do not fit"):
        stack.fill(0, p[:1, :, :2])


# -- bad input -----------------------------------------------------------------------------


def test_bad_input_gets_clear_errors():
    d = lesion_cases(12, size=8, n_samples=4, seed=0)
    s, y = d["samples"], d["masks"]
    with pytest.raises(ConformalInputError, match="at least 2 Monte-Carlo samples"):
        CONSIGN(MethodOptions(k=1)).fit(s[:, :1], y)
    with pytest.raises(ConformalInputError, match=r"K = 4 .* N_s - 1 = 3"):
        CONSIGN(MethodOptions(k=4)).fit(s, y)
    for beta in (0.0, 1.0, 1.2):
        with pytest.raises(ConformalInputError, match="beta"):
            CONSIGN(MethodOptions(beta=beta))
    bad = y.copy()
    bad[0, 0, 0] = 2
    with pytest.raises(ConformalInputError, match=r"labels in \[0, 2\] .* 2 classes"):
        CONSIGN(MethodOptions(k=2)).fit(s, bad)
    with pytest.raises(ConformalInputError, match="masks have shape"):
        CONSIGN(MethodOptions(k=2)).fit(s, y[:, :4])
    with pytest.raises(ConformalInputError, match="empty"):
        CONSIGN(MethodOptions(k=2)).fit(s, np.zeros_like(y))
    with pytest.raises(ConformalInputError, match="outside \\[0, 1\\]"):
        CONSIGN(MethodOptions(k=2)).fit(s * 2, y)
    stack = decompose_stack(s, 3, binary=True)
    with pytest.raises(ConformalInputError, match="K = 3 components but this CONSIGN uses K = 2"):
        CONSIGN(MethodOptions(k=2)).fit(stack, y)
    with pytest.raises(ConformalInputError, match=r"K = 3 components .* calibrated with K = 2"):
        CONSIGN.from_state(_stream_state(k=2)).unit_bands(stack.unit(0))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ConformalInputError, match="CUDA is not available"):
        CONSIGN(MethodOptions(device="cuda"))
    with pytest.raises(ConformalInputError, match="CUDA is not available"):
        CONSIGN(MethodOptions(device="cuda:0"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    d = lesion_cases(24, size=12, n_samples=6, seed=12)
    stars = {}
    for device in ("cpu", "cuda"):
        m = CONSIGN(MethodOptions(beta=0.8, k=3, device=device), search=FAST)
        stars[device] = m.fit(d["samples"], d["masks"]).lambda_stars(0.2)
    agree = np.isclose(stars["cpu"], stars["cuda"], atol=0.011)
    assert agree.mean() >= 0.9, (stars["cpu"], stars["cuda"])
