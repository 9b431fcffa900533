"""The Sampler: MC dropout, ensembles, TTA, seeding, streaming memory, reducers, cancel."""

from __future__ import annotations

import threading
import tracemalloc
import weakref

import numpy as np
import pytest
import torch
from models_helpers import make_tiny_unet
from torch import nn

from napari_consign.conformal.consign_decomposition import (
    DecompositionStack,
    as_channels,
    decompose_units,
)
from napari_consign.conformal.errors import Cancelled
from napari_consign.models.reductions import KeepSamples, Moments, Reducer, TopK
from napari_consign.models.sampler import (
    Sampler,
    SliceProgress,
    enable_mc_dropout,
    slice_order,
)


@pytest.fixture
def volume():
    rng = np.random.default_rng(0)
    return (rng.random((5, 30, 26)) * 100).astype(np.float32)  # not a multiple of 4: padded


def test_dropout_samples_differ_and_repeat_with_seed(tiny_unet, volume):
    s1 = Sampler(tiny_unet, n_samples=6, device="cpu", seed=3)
    a = s1.run(volume, [KeepSamples(dtype=np.float32)])["samples"]
    assert a.shape == (5, 6, 30, 26)
    assert np.all((a >= 0) & (a <= 1))
    assert np.abs(a[:, 0] - a[:, 1]).max() > 1e-3  # dropout makes samples differ
    b = Sampler(tiny_unet, n_samples=6, device="cpu", seed=3).run(
        volume, [KeepSamples(dtype=np.float32)]
    )["samples"]
    assert np.array_equal(a, b)  # same seed: identical samples
    c = Sampler(tiny_unet, n_samples=6, device="cpu", seed=4).run(
        volume, [KeepSamples(dtype=np.float32)]
    )["samples"]
    assert not np.array_equal(a, c)


def test_seeded_samples_do_not_depend_on_slice_order(tiny_unet, volume):
    s = Sampler(tiny_unet, n_samples=4, device="cpu", seed=0)
    a = s.run(volume, [KeepSamples(dtype=np.float32)])["samples"]
    b = s.run(volume, [KeepSamples(dtype=np.float32)], start_slice=3)["samples"]
    assert np.array_equal(a, b)


def test_global_rng_untouched(tiny_unet, volume):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    Sampler(tiny_unet, n_samples=2, device="cpu", seed=0).run(volume[:1])
    assert torch.equal(torch.rand(3), expected)


def test_mc_dropout_modes(tiny_unet):
    assert enable_mc_dropout(tiny_unet) == 5  # one Dropout2d per block (3 enc + 2 dec)
    drops = [m for m in tiny_unet.modules() if isinstance(m, nn.Dropout2d)]
    norms = [m for m in tiny_unet.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.training for m in drops) and not any(m.training for m in norms)
    scripted = torch.jit.script(make_tiny_unet())
    assert enable_mc_dropout(scripted) == 5
    tiny_unet.eval()


def test_sampler_restores_module_modes(tiny_unet, volume):
    tiny_unet.eval()
    Sampler(tiny_unet, n_samples=2, device="cpu").run(volume[:1])
    assert not any(m.training for m in tiny_unet.modules())


def test_no_dropout_model_needs_tta():
    net = make_tiny_unet(dropout=0.0)
    for m in net.modules():
        if isinstance(m, nn.Dropout2d):
            m.p = 0.0
    with pytest.raises(ValueError, match="inactive"):
        Sampler(net, n_samples=4, device="cpu")

    class NoDrop(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match=r"no dropout layers.*mode='tta'"):
        Sampler(NoDrop(), device="cpu")


def test_tta_mode(volume):
    """Sample 0 is a plain eval-mode forward; flipped samples are flipped back onto the input."""
    net = make_tiny_unet()
    s = Sampler(net, mode="tta", device="cpu")
    assert s.n_samples == 4
    out = s.run(volume, [KeepSamples(dtype=np.float32), Moments()])
    samples = out["samples"]
    assert samples.shape == (5, 4, 30, 26)
    h, w = volume.shape[1:]
    with torch.no_grad():
        for z in (0, 3):
            x, _ = s._prepare(volume[z])  # normalised and padded, as the sampler feeds the net
            assert x.shape[-2:] != (h, w)  # padded: flips must undo the padding's position too
            net.eval()

            def fg(t):
                return torch.softmax(net(t), dim=1)[:, 1].numpy()

            np.testing.assert_allclose(samples[z, 0], fg(x)[0, :h, :w], atol=1e-6)
            for i, dims in enumerate([(-1,), (-2,), (-2, -1)], start=1):
                raw = fg(x.flip(dims))  # the prediction on the flipped input, still flipped
                aligned = np.flip(raw, axis=tuple(d for d in dims))[0, :h, :w]
                np.testing.assert_allclose(samples[z, i], aligned, atol=1e-6)
                assert not np.allclose(samples[z, i], raw[0, :h, :w], atol=1e-3)
    # the flips give different maps (the net is not flip-invariant), and the run repeats
    assert np.abs(samples[:, 0] - samples[:, 1]).max() > 1e-3
    ref = s.run(volume, [KeepSamples(dtype=np.float32)])["samples"]
    assert np.array_equal(samples, ref)
    assert np.allclose(out["mean"], samples.mean(1), atol=1e-6)
    with pytest.raises(ValueError, match=r"1\.\.4 samples"):
        Sampler(net, mode="tta", n_samples=5, device="cpu")


def test_ensemble_mode(volume):
    members = [make_tiny_unet(seed=i) for i in range(3)]
    s = Sampler(members, mode="ensemble", device="cpu")
    assert s.n_samples == 3
    samples = s.run(volume, [KeepSamples(dtype=np.float32)])["samples"]
    assert samples.shape == (5, 3, 30, 26)
    assert np.abs(samples[:, 0] - samples[:, 1]).max() > 1e-4
    with pytest.raises(ValueError, match="gives 3 samples, not 5"):
        Sampler(members, mode="ensemble", n_samples=5, device="cpu")
    with pytest.raises(ValueError, match="use mode='ensemble'"):
        Sampler(members, device="cpu")


class _Spy(Reducer):
    """Records every tensor handed over (its bytes) and how many of them are still alive.

    Holds only weak references, so it keeps nothing alive itself.
    """

    def start(self, n_slices, shape, n_samples):
        self.expected = (n_samples, *shape)
        self.seen = []
        self.sizes = []
        self.alive_max = 0
        self._refs = []

    def update(self, z, samples):
        assert tuple(samples.shape) == self.expected
        self.seen.append(z)
        self.sizes.append(samples.numel() * samples.element_size())
        self._refs.append(weakref.ref(samples))
        self.alive_max = max(self.alive_max, sum(r() is not None for r in self._refs))

    def result(self):
        return {"seen": self.seen}


def _traced_run(sampler, vol, reducers, **kwargs):
    """Run and return ``(result, peak)``: peak bytes of numpy (traced) memory allocated during
    the run, above what existed before. numpy registers every array buffer with tracemalloc;
    torch's own buffers are covered by the spy (what it hands over) and the batch-size hook."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        result = sampler.run(vol, reducers, **kwargs)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return result, peak


def _kept_bytes(result) -> int:
    total = 0
    for v in result.values():
        if isinstance(v, np.ndarray):
            total += v.nbytes
        elif isinstance(v, DecompositionStack):
            total += v.nbytes
    return total


@pytest.mark.parametrize("consign", [False, True], ids=["moments", "moments+topk"])
def test_3d_run_never_holds_all_samples(tiny_unet, consign):
    """N_s = 20 on 3D volumes: the memory allocated during a run (numpy buffers, traced) is
    what the reducers keep plus one slice's working memory; it grows with Z like the reducers'
    outputs (8 bytes per voxel for mean + variance, 24 more for CONSIGN's K = 5 decomposition),
    not like all samples (N_s x 4 = 80 bytes per voxel)."""
    h, w, ns, k = 32, 28, 20, 5
    one_slice = ns * h * w * 4  # float32 samples of one slice
    peaks, kept, raws = {}, {}, {}
    for z in (8, 32):
        vol = np.random.default_rng(z).random((z, h, w)).astype(np.float32)
        batches = []
        hook = tiny_unet.register_forward_hook(lambda m, i, o, b=batches: b.append(o.shape[0]))
        spy, steps = _Spy(), []
        reducers = [spy, Moments()] + ([TopK(k)] if consign else [])
        sampler = Sampler(tiny_unet, n_samples=ns, device="cpu", chunk_size=4)
        try:
            result, peaks[z] = _traced_run(
                sampler, vol, reducers, start_slice=z // 2, progress=steps.append
            )
        finally:
            hook.remove()
        assert [s.done for s in steps] == list(range(1, z + 1))
        assert all(isinstance(s, SliceProgress) and s.total == z for s in steps)
        kept[z] = _kept_bytes(result)
        raws[z] = z * one_slice  # Z x N_s x H x W x 4
        # every hand-over is one slice, and at most one slice's samples is alive at a time
        assert spy.sizes == [one_slice] * z and spy.alive_max == 1
        assert sorted(spy.seen) == list(range(z)) and spy.seen[0] == z // 2
        assert max(batches) <= 4  # chunked forward passes
        per_voxel = 8 + (4 * (k + 1) if consign else 0)
        assert per_voxel * z * h * w <= kept[z] <= per_voxel * z * h * w + 8 * z * k * (ns + 1)
        assert kept[z] == sampler.estimate_bytes(vol.shape, reducers[1:])
        # the peak: what is kept plus a fixed working memory, the size of a few slices' samples
        # (CONSIGN: a float64 copy of one slice for its SVD, 2 slices' worth, and components)
        assert kept[z] <= peaks[z] <= kept[z] + 4 * one_slice, (peaks[z], kept[z], one_slice)
        print(
            f"Z={z} N_s={ns} {h}x{w} {'moments+topk' if consign else 'moments'}: "
            f"peak {peaks[z]} B, kept {kept[z]} B, all samples {raws[z]} B "
            f"({peaks[z] / raws[z]:.2f})"
        )
    # well below all samples: 8 of 80 bytes per voxel kept for mean + variance, 32 of 80 with
    # CONSIGN's decomposition ((K + 1) float32 maps), plus one slice's working memory
    assert peaks[32] < (0.6 if consign else 0.2) * raws[32]
    growth = peaks[32] - peaks[8]
    # grows like the outputs (plus the test's own per-slice Python bookkeeping: progress
    # events, spy lists and weak references, a few hundred bytes per slice) ...
    assert growth <= 1.05 * (kept[32] - kept[8]) + 1024 * (32 - 8)
    assert growth < 0.45 * (raws[32] - raws[8])  # ... not like N_s x the volume


def test_topk_units_are_consigns_decomposition(tiny_unet, volume):
    """The streamed per-slice decomposition is exactly CONSIGN's decomposition of the samples,
    and equals an explicit SVD of the two-channel samples [1 - p, p] (docs/methods.md §5.1)."""
    ns, k = 6, 3
    out = Sampler(tiny_unet, n_samples=ns, device="cpu", seed=2).run(
        volume, [TopK(k), KeepSamples(dtype=np.float32)]
    )
    stack, samples = out["topk"], out["samples"]
    raw = decompose_units(samples, k, binary=True)
    for z in range(len(volume)):
        d, r = stack.unit(z), raw[z]
        for f in ("mean", "components", "singular", "coefficients"):
            np.testing.assert_array_equal(getattr(d, f), getattr(r, f))
        flat = as_channels(samples[z], True).reshape(ns, -1)
        mu = flat.mean(0)
        uu, ss, vt = np.linalg.svd((flat - mu).T, full_matrices=False)
        np.testing.assert_allclose(d.mean, mu, atol=1e-6)
        np.testing.assert_allclose(d.singular, ss[:k], rtol=1e-7)
        for j in range(k):  # equal up to the sign of each (u_k, v_k) pair
            sign = np.sign(uu[:, j] @ d.components[j])
            np.testing.assert_allclose(d.components[j], sign * uu[:, j], atol=1e-5)
            np.testing.assert_allclose(d.coefficients[j], sign * ss[j] * vt[j], atol=1e-7)
    full = Sampler(tiny_unet, n_samples=ns, device="cpu", seed=2).run(volume[:1], [TopK(ns - 1)])
    d = full["topk"].unit(0)  # all components: the samples are rebuilt exactly
    rebuilt = d.mean + d.coefficients.T @ d.components.astype(np.float64)
    np.testing.assert_allclose(rebuilt, as_channels(samples[0], True).reshape(ns, -1), atol=1e-5)


def test_moments_match_kept_samples(tiny_unet, volume):
    out = Sampler(tiny_unet, n_samples=5, device="cpu").run(
        volume, [Moments(), KeepSamples(dtype=np.float32)]
    )
    s = out["samples"]
    assert np.allclose(out["mean"], s.mean(1), atol=1e-6)
    assert np.allclose(out["var"], s.var(1, ddof=1), atol=1e-6)


def test_keep_selected_slices_float16(tiny_unet, volume):
    out = Sampler(tiny_unet, n_samples=3, device="cpu").run(volume, [KeepSamples(slices=[1, 4])])
    assert set(out["samples"]) == {1, 4}
    assert out["samples"][4].shape == (3, 30, 26) and out["samples"][4].dtype == np.float16


def test_topk_reducer_in_a_run(tiny_unet, volume):
    out = Sampler(tiny_unet, n_samples=6, device="cpu").run(volume, [TopK(k=5), Moments()])
    d = out["topk"]
    assert isinstance(d, DecompositionStack) and d.binary and len(d) == 5
    # binary: only the foreground channel is stored (the background one is its mirror)
    assert d.components.shape == (5, 5, 1, 30, 26) and d.components.dtype == np.float32
    assert d.mean.shape == (5, 1, 30, 26) and d.mean.dtype == np.float32
    assert d.singular.shape == (5, 5) and d.coefficients.shape == (5, 5, 6)
    assert np.all(np.diff(d.singular, axis=1) <= 1e-12)
    assert np.allclose(d.mean[:, 0], out["mean"], atol=1e-5)
    unit = d.unit(2)
    assert unit.mean.shape == (2 * 30 * 26,) and unit.n_classes == 2 and unit.k == 5
    np.testing.assert_array_equal(unit.components[:, : 30 * 26], -unit.components[:, 30 * 26 :])
    assert (
        Sampler(tiny_unet, n_samples=3, device="cpu").run(volume[:1], [TopK(k=5)])["topk"].k == 2
    )  # capped at N_s - 1


def test_cancel_stops_at_next_slice(tiny_unet, volume):
    ev = threading.Event()
    gen = Sampler(tiny_unet, n_samples=2, device="cpu").iter_volume(volume, cancel=ev)
    assert next(gen).done == 1
    ev.set()
    with pytest.raises(Cancelled, match="after 1 of 5 slices"):
        next(gen)
    assert not any(m.training for m in tiny_unet.modules())  # modes restored


def test_inference_mode_does_not_leak(tiny_unet, volume):
    gen = Sampler(tiny_unet, n_samples=2, device="cpu").iter_volume(volume)
    next(gen)
    assert not torch.is_inference_mode_enabled()
    gen.close()


def test_bad_inputs(tiny_unet):
    s = Sampler(tiny_unet, n_samples=2, device="cpu")
    with pytest.raises(ValueError, match=r"expected \(Z, H, W\)"):
        s.run(np.zeros((2, 2, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        s.run(np.zeros((2, 8, 8), np.float32), start_slice=2)
    with pytest.raises(ValueError, match="unknown sampling mode"):
        Sampler(tiny_unet, mode="bayes", device="cpu")


def test_slice_order():
    assert slice_order(5, 2) == [2, 3, 1, 4, 0]
    assert slice_order(3) == [0, 1, 2]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batched_and_half(tiny_unet, volume):
    full = Sampler(tiny_unet, n_samples=8, device="cuda", seed=0)
    assert full.chunk_size == 8  # one batched forward pass per slice
    a = full.run(volume, [Moments()])["mean"]
    b = Sampler(tiny_unet, n_samples=8, device="cuda", seed=0).run(volume, [Moments()])["mean"]
    assert np.array_equal(a, b)
    h = Sampler(tiny_unet, n_samples=8, device="cuda", seed=0, half=True).run(volume)["mean"]
    assert np.abs(h - a).max() < 0.05
    tiny_unet.to("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_3d_run_device_memory_does_not_grow_with_z(tiny_unet):
    """On CUDA the device holds one slice's batch at a time: the peak of allocated device
    memory during a run with mean/variance and CONSIGN's decomposition does not grow with Z."""
    h, w, ns = 64, 64, 20
    one_slice = ns * h * w * 4
    peaks = {}
    for z in (4, 16):
        vol = np.random.default_rng(z).random((z, h, w)).astype(np.float32)
        sampler = Sampler(tiny_unet, n_samples=ns, device="cuda", seed=0)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = sampler.run(vol, [Moments(), TopK(5)])
        torch.cuda.synchronize()
        peaks[z] = torch.cuda.max_memory_allocated() - base
        assert out["topk"].k == 5 and out["mean"].shape == (z, h, w)
    print(f"CUDA peak above baseline: Z=4 {peaks[4]} B, Z=16 {peaks[16]} B")
    assert peaks[16] <= 1.05 * peaks[4] + one_slice  # per slice, not per volume
    assert peaks[16] < 16 * one_slice
    tiny_unet.to("cpu")
