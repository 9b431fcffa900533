"""The Sampler: MC dropout, ensembles, TTA, seeding, streaming memory, reducers, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from models_helpers import make_tiny_unet
from torch import nn

from napari_consign.models.reductions import KeepSamples, Moments, Reducer, TopK, decompose
from napari_consign.models.sampler import (
    Sampler,
    SamplingCancelled,
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
    net = make_tiny_unet()
    s = Sampler(net, mode="tta", device="cpu")
    assert s.n_samples == 4
    out = s.run(volume, [KeepSamples(dtype=np.float32), Moments()])
    samples = out["samples"]
    assert samples.shape == (5, 4, 30, 26)
    # identity transform equals a plain eval-mode forward of the same slice
    ref = s.run(volume, [KeepSamples(dtype=np.float32)])["samples"]
    assert np.array_equal(samples, ref)  # deterministic
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


class _Recorder(Reducer):
    """Records the size of everything handed over, and that each slice comes exactly once."""

    def start(self, n_slices, shape, n_samples):
        self.expected = (n_samples, *shape)
        self.seen = []
        self.max_numel = 0

    def update(self, z, samples):
        assert tuple(samples.shape) == self.expected
        self.seen.append(z)
        self.max_numel = max(self.max_numel, samples.numel())

    def result(self):
        return {"seen": self.seen}


def _largest_tensor_in(obj_dict) -> int:
    best = 0
    for v in obj_dict.values():
        if isinstance(v, torch.Tensor):
            best = max(best, v.numel())
    return best


def test_3d_run_never_holds_all_samples(tiny_unet):
    """N_s = 20 on a 3D volume: per slice only; no tensor ever near Z x N_s x H x W."""
    z, h, w, ns = 12, 32, 28, 20
    vol = np.random.default_rng(1).random((z, h, w)).astype(np.float32)
    batches = []
    hook = tiny_unet.register_forward_hook(lambda m, i, o: batches.append(o.shape[0]))
    rec = _Recorder()
    moments = Moments()
    sampler = Sampler(tiny_unet, n_samples=ns, device="cpu", chunk_size=4)
    gen = sampler.iter_volume(vol, [rec, moments], start_slice=6)
    held = 0
    steps = []
    try:
        while True:
            steps.append(next(gen))
            held = max(held, _largest_tensor_in(gen.gi_frame.f_locals))
            held = max(held, _largest_tensor_in(vars(sampler)))
    except StopIteration as stop:
        result = stop.value
    finally:
        hook.remove()
    one_slice = ns * h * w
    assert rec.max_numel == one_slice
    assert held <= one_slice  # nothing bigger than one slice's samples stays alive
    assert max(batches) <= 4  # chunked forward passes
    assert sorted(rec.seen) == list(range(z)) and rec.seen[0] == 6
    assert [s.done for s in steps] == list(range(1, z + 1))
    assert all(isinstance(s, SliceProgress) and s.total == z for s in steps)
    # what is kept is per-volume, not per-sample: 2 float32 maps per voxel
    kept = result["mean"].nbytes + result["var"].nbytes
    assert kept == 2 * 4 * z * h * w < 4 * z * one_slice
    assert sampler.estimate_bytes((z, h, w), [Moments()]) == kept


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


def test_topk_matches_explicit_two_channel_svd():
    rng = np.random.default_rng(0)
    p = torch.from_numpy(rng.random((7, 6, 5)))
    mean, u, s, coeffs = decompose(p, k=3, two_channel=True)
    flat = np.concatenate([1 - p.numpy(), p.numpy()], axis=2).reshape(7, -1)  # wrong order
    # METHODS 5.1 flattens (L, H, W) label axis first: build it that way
    flat = np.stack([1 - p.numpy(), p.numpy()], axis=1).reshape(7, -1)
    mu = flat.mean(0)
    uu, ss, vt = np.linalg.svd((flat - mu).T, full_matrices=False)
    assert np.allclose(mean.reshape(-1), mu, atol=1e-6)
    assert np.allclose(s, ss[:3], rtol=1e-8)
    for k in range(3):  # equal up to the sign of each (u_k, v_k) pair
        sign = np.sign(uu[:, k] @ u[k].reshape(-1))
        assert np.allclose(u[k].reshape(-1), sign * uu[:, k], atol=1e-5)
        assert np.allclose(coeffs[k], sign * ss[k] * vt[k], atol=1e-8)
    # reconstruction from all components is exact
    full = decompose(p, k=6, two_channel=True)
    rec = full[0].reshape(1, -1) + full[3].T @ full[1].reshape(6, -1)
    assert np.allclose(rec, flat, atol=1e-5)


def test_topk_reducer_in_a_run(tiny_unet, volume):
    out = Sampler(tiny_unet, n_samples=6, device="cpu").run(volume, [TopK(k=5), Moments()])
    d = out["topk"]
    assert d.U.shape == (5, 5, 2, 30, 26) and d.U.dtype == np.float32
    assert d.S.shape == (5, 5) and d.coeffs.shape == (5, 5, 6)
    assert np.all(np.diff(d.S, axis=1) <= 1e-12)
    assert np.allclose(d.mean[:, 1], out["mean"], atol=1e-5)
    assert (
        Sampler(tiny_unet, n_samples=3, device="cpu").run(volume[:1], [TopK(k=5)])["topk"].k == 2
    )  # capped at N_s - 1


def test_cancel_stops_at_next_slice(tiny_unet, volume):
    ev = threading.Event()
    gen = Sampler(tiny_unet, n_samples=2, device="cpu").iter_volume(volume, cancel=ev)
    assert next(gen).done == 1
    ev.set()
    with pytest.raises(SamplingCancelled, match="after 1 of 5 slices"):
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
