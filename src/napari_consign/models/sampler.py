"""Monte-Carlo sampling of foreground probability maps, streamed slice by slice.

Modes:

- ``"mc_dropout"``: dropout modules in train mode, everything else (normalisation layers) in
  eval mode; N_s stochastic passes per slice;
- ``"ensemble"``: one deterministic pass of each member (weight file) per slice;
- ``"tta"``: test-time augmentation by flips (identity, x, y, both) for models without
  dropout; N_s <= 4.

A 3D scan ``(Z, H, W)`` is processed one axial slice at a time (optionally starting from the
slice on screen and moving outwards); each slice's samples ``(N_s, H, W)`` go to the reducers
(:mod:`.reductions`) and are then dropped. :meth:`Sampler.iter_volume` is a generator that yields
a :class:`SliceProgress` per slice and checks a cancel flag at each step (wrap it in napari's
``thread_worker``); :meth:`Sampler.run` runs it to completion.

Reproducibility: with an integer ``seed`` each slice draws its dropout masks from a torch RNG
seeded with ``(seed, z)`` (global RNG state is saved and restored around it), so the same seed,
chunk size and device give the same samples, whatever the slice order.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..conformal.device import resolve_device
from ..conformal.errors import Cancelled
from ..conformal.errors import is_cancelled as _is_cancelled
from .loading import LoadedModel, check_model_output
from .preprocess import check_normalization, normalize, pad_to_multiple
from .reductions import Moments, Reducer
from .stochastic import enable_mc_dropout, slice_order, slice_seed

__all__ = [
    "MODES",
    "Sampler",
    "SliceProgress",
    "enable_mc_dropout",
    "sample_volume",
    "slice_order",
]

MODES = ("mc_dropout", "ensemble", "tta")
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))
CPU_CHUNK = 2  # ENVIRONMENT.md 5: chunks of 1-4 samples are fastest on a 2-core CPU


@dataclass(frozen=True)
class SliceProgress:
    """One step of :meth:`Sampler.iter_volume`: ``done`` of ``total`` slices, ``z`` just done."""

    done: int
    total: int
    z: int


def _as_loaded(model, device) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model.to(device)
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a LoadedModel or torch.nn.Module, not {type(model).__name__}")
    model.to(device)
    cfg = getattr(model, "config", None)
    cin = int(getattr(cfg, "in_channels", 1))
    divisor = int(getattr(model, "size_divisor", 16))
    c, out = check_model_output(model, in_channels=cin, size=max(64, divisor), device=device)
    return LoadedModel(
        module=model,
        source="module",
        identity="unsaved",
        in_channels=cin,
        out_channels=c,
        size_divisor=divisor,
        output=out,
    )


class Sampler:
    """Draws N_s foreground-probability maps per slice with one or more models.

    Parameters
    ----------
    model : LoadedModel, torch.nn.Module, or a sequence of them (ensemble mode)
    mode : "mc_dropout" | "ensemble" | "tta"
    n_samples : N_s; default 20 (mc_dropout), the member count (ensemble), 4 (tta)
    device : anything :func:`resolve_device` accepts
    chunk_size : samples per forward pass; default 2 on CPU, N_s (one batch) on GPUs. On a CUDA
        out-of-memory error the chunk is halved and retried.
    half : run under float16 autocast on CUDA (ignored on CPU)
    seed : int for reproducible dropout masks; None draws from torch's global RNG
    normalization : overrides the model's input normalisation (see :mod:`.preprocess`)
    foreground_channel : channel of the foreground class; default: 1 - p(channel 0) for C >= 2
        (equals channel 1 for a binary model), sigmoid/identity for C == 1
    num_threads : torch CPU threads during a run (restored afterwards); the GUI passes
        ``max(1, os.cpu_count() - 1)`` to keep a core free
    """

    def __init__(
        self,
        model,
        *,
        mode: str = "mc_dropout",
        n_samples: int | None = None,
        device: str | torch.device = "cpu",
        chunk_size: int | None = None,
        half: bool = False,
        seed: int | None = 0,
        normalization: dict | str | None = None,
        foreground_channel: int | None = None,
        num_threads: int | None = None,
    ):
        if mode not in MODES:
            raise ValueError(f"unknown sampling mode {mode!r}: use one of {', '.join(MODES)}")
        self.device = resolve_device(device)
        members = list(model) if isinstance(model, Sequence) else [model]
        if not members:
            raise ValueError("no model given")
        if mode != "ensemble" and len(members) > 1:
            raise ValueError(f"{len(members)} models given: use mode='ensemble'")
        self.models = [_as_loaded(m, self.device) for m in members]
        self.mode = mode
        if mode == "mc_dropout":
            n_samples = 20 if n_samples is None else n_samples
        elif mode == "ensemble":
            if n_samples not in (None, len(members)):
                raise ValueError(
                    f"an ensemble of {len(members)} models gives {len(members)} samples, "
                    f"not {n_samples}"
                )
            n_samples = len(members)
        else:
            n_samples = len(TTA_FLIPS) if n_samples is None else n_samples
            if not 1 <= n_samples <= len(TTA_FLIPS):
                raise ValueError(f"test-time augmentation gives 1..{len(TTA_FLIPS)} samples")
        if n_samples < 1:
            raise ValueError("n_samples must be >= 1")
        self.n_samples = int(n_samples)
        if chunk_size is None:
            chunk_size = CPU_CHUNK if self.device.type == "cpu" else self.n_samples
        self.chunk_size = max(1, min(int(chunk_size), self.n_samples))
        self.half = bool(half) and self.device.type == "cuda"
        self.seed = seed
        first = self.models[0]
        self.normalization = check_normalization(
            normalization if normalization is not None else first.normalization
        )
        cins = {m.in_channels for m in self.models}
        if len(cins) != 1:
            raise ValueError(f"ensemble members take different input channels: {sorted(cins)}")
        self.in_channels = cins.pop()
        self.size_divisor = math.lcm(*(m.size_divisor for m in self.models))
        self.foreground_channel = foreground_channel
        self.num_threads = num_threads
        if mode == "mc_dropout":
            self._check_stochastic()

    @property
    def identity(self) -> str:
        """Identity of the model(s) (sha256; ensembles: of the members' hashes)."""
        if len(self.models) == 1:
            return self.models[0].identity
        import hashlib

        return hashlib.sha256("".join(m.identity for m in self.models).encode()).hexdigest()

    # ------------------------------------------------------------------ internals
    def _set_modes(self) -> list[bool]:
        flags = [m.module.training for m in self.models]
        for m in self.models:
            if self.mode == "mc_dropout":
                enable_mc_dropout(m.module)
            else:
                m.module.eval()
        return flags

    def _restore_modes(self, flags: list[bool]) -> None:
        for m, f in zip(self.models, flags, strict=True):
            m.module.train(f)

    def _check_stochastic(self) -> None:
        m = self.models[0]
        was_training = m.module.training
        n = enable_mc_dropout(m.module)
        try:
            if n == 0:
                raise ValueError(
                    f"{m.name}: the model has no dropout layers, so MC dropout cannot sample; "
                    "use mode='tta' (flips) or an ensemble of weight files"
                )
            x = torch.rand(
                2,
                self.in_channels,
                self.size_divisor * 4,
                self.size_divisor * 4,
                generator=torch.Generator().manual_seed(1),
            ).to(self.device)
            x[1] = x[0]
            with torch.inference_mode(), torch.random.fork_rng(**self._rng_kwargs()):
                torch.manual_seed(12345)
                out = m.module(x)
            if isinstance(out, list | tuple):
                out = out[0]
            if torch.equal(out[0], out[1]):
                raise ValueError(
                    f"{m.name}: dropout layers exist but are inactive (e.g. traced or frozen "
                    "TorchScript); MC dropout cannot sample: use mode='tta' or an ensemble"
                )
        finally:
            m.module.train(was_training)

    def _rng_kwargs(self) -> dict:
        if self.device.type == "cuda":
            idx = (
                self.device.index if self.device.index is not None else torch.cuda.current_device()
            )
            return {"devices": [idx], "device_type": "cuda"}
        return {"devices": []}  # CPU state only (on MPS, manual_seed also reseeds the device)

    def _forward(self, lm: LoadedModel, x: torch.Tensor) -> torch.Tensor:
        """Foreground probabilities (B, H, W), float32, for a prepared batch."""
        if self.half:
            with torch.autocast("cuda", dtype=torch.float16):
                out = lm.module(x)
        else:
            out = lm.module(x)
        if isinstance(out, list | tuple):
            out = out[0]
        out = out.float()
        c = out.shape[1]
        if c == 1:
            p = torch.sigmoid(out[:, 0]) if lm.output == "logits" else out[:, 0]
        else:
            probs = torch.softmax(out, dim=1) if lm.output == "logits" else out
            ch = self.foreground_channel
            p = probs[:, ch] if ch is not None else 1.0 - probs[:, 0]
        return p.clamp_(0.0, 1.0)

    def _forward_chunk(self, lm, x, count):
        """Run ``count`` stochastic passes of ``x`` (1, C, H, W) in chunks; (count, H, W)."""
        outs = []
        i = 0
        while i < count:
            c = min(self.chunk_size, count - i)
            try:
                outs.append(self._forward(lm, x.expand(c, *x.shape[1:])))
            except torch.cuda.OutOfMemoryError:
                if self.chunk_size == 1:
                    raise
                self.chunk_size = max(1, self.chunk_size // 2)
                torch.cuda.empty_cache()
                continue
            i += c
        return torch.cat(outs, 0)

    def _prepare(self, image) -> tuple[torch.Tensor, tuple[int, int]]:
        t = torch.as_tensor(np.asarray(image), dtype=torch.float32)
        if t.ndim == 2:
            t = t[None]
        if t.ndim != 3 or t.shape[0] != self.in_channels:
            raise ValueError(
                f"slice of shape {tuple(t.shape)}: the model takes {self.in_channels} channel(s) "
                "of (H, W)"
            )
        t = normalize(t[None].to(self.device), self.normalization)
        return pad_to_multiple(t, self.size_divisor)

    def sample_slice(self, image, z: int = 0) -> torch.Tensor:
        """N_s foreground-probability maps ``(N_s, H, W)`` (float32, on the device) of one slice.

        ``image`` is ``(H, W)`` or ``(C, H, W)``. Call inside ``torch.inference_mode()`` with
        the models' modes set (as :meth:`iter_volume` does); ``z`` selects the slice's seed.
        """
        x, (h, w) = self._prepare(image)
        seed = None if self.seed is None else slice_seed(self.seed, z)
        with torch.random.fork_rng(enabled=seed is not None, **self._rng_kwargs()):
            if seed is not None:
                torch.manual_seed(seed)
            if self.mode == "mc_dropout":
                out = self._forward_chunk(self.models[0], x, self.n_samples)
            elif self.mode == "ensemble":
                out = torch.cat([self._forward(m, x) for m in self.models], 0)
            else:
                flips = TTA_FLIPS[: self.n_samples]
                parts = []
                for i in range(0, len(flips), self.chunk_size):
                    chunk = flips[i : i + self.chunk_size]
                    xb = torch.cat([x.flip(d) if d else x for d in chunk], 0)
                    pb = self._forward(self.models[0], xb)
                    parts += [
                        p.flip(d) if d else p for p, d in zip(pb.unsqueeze(1), chunk, strict=True)
                    ]
                out = torch.cat(parts, 0)
        return out[:, :h, :w]

    # ------------------------------------------------------------------ public
    def estimate_bytes(
        self, shape: Sequence[int], reducers: Iterable[Reducer] | None = None
    ) -> int:
        """Rough host memory for the outputs of a run on a volume ``(Z, H, W)``."""
        z, h, w = (1, *shape) if len(shape) == 2 else tuple(shape[:1]) + tuple(shape[-2:])
        total = 0
        for r in reducers or [Moments()]:
            total += r.nbytes(z, (h, w), self.n_samples)
        return int(total)

    def iter_volume(
        self,
        volume,
        reducers: Iterable[Reducer] | None = None,
        *,
        start_slice: int | None = None,
        cancel: threading.Event | Callable[[], bool] | None = None,
    ) -> Generator[SliceProgress, None, dict[str, object]]:
        """Sample a volume slice by slice, feeding the reducers; yield progress per slice.

        ``volume`` is ``(Z, H, W)`` (or ``(H, W)``, one slice; ``(Z, C, H, W)`` for models with
        C > 1 input channels); a stack of independent 2D cases works the same way. Default
        reducers: :class:`Moments` (mean and variance). The generator's return value (napari's
        ``worker.returned``) is the merged dict of the reducers' results. A set ``cancel``
        (Event or callable) raises :class:`~napari_consign.conformal.errors.Cancelled` at the next
        slice.
        """
        vol = volume if isinstance(volume, np.ndarray | torch.Tensor) else np.asarray(volume)
        if vol.ndim == 2 or (vol.ndim == 3 and self.in_channels > 1):
            vol = vol[None]
        want = 3 if self.in_channels == 1 else 4
        if vol.ndim != want:
            raise ValueError(
                f"volume of shape {tuple(vol.shape)}: expected (Z, H, W)"
                + ("" if want == 3 else f" with {self.in_channels} channels: (Z, C, H, W)")
            )
        n_slices = int(vol.shape[0])
        shape = (int(vol.shape[-2]), int(vol.shape[-1]))
        reducers = list(reducers) if reducers is not None else [Moments()]
        order = slice_order(n_slices, start_slice)
        for r in reducers:
            r.start(n_slices, shape, self.n_samples)
        old_threads = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        flags = self._set_modes()
        try:
            for done, z in enumerate(order, start=1):
                if _is_cancelled(cancel):
                    raise Cancelled(f"sampling cancelled after {done - 1} of {n_slices} slices")
                with torch.inference_mode():
                    samples = self.sample_slice(vol[z], z)
                    for r in reducers:
                        r.update(z, samples)
                    del samples
                yield SliceProgress(done, n_slices, z)
        finally:
            self._restore_modes(flags)
            if self.num_threads:
                torch.set_num_threads(old_threads)
        results: dict[str, object] = {}
        for r in reducers:
            res = r.result()
            clash = set(res) & set(results)
            if clash:
                raise ValueError(f"two reducers return the same key(s): {sorted(clash)}")
            results.update(res)
        return results

    def run(
        self,
        volume,
        reducers: Iterable[Reducer] | None = None,
        *,
        start_slice: int | None = None,
        cancel=None,
        progress: Callable[[SliceProgress], None] | None = None,
    ) -> dict[str, object]:
        """Run :meth:`iter_volume` to completion and return the reducers' results."""
        gen = self.iter_volume(volume, reducers, start_slice=start_slice, cancel=cancel)
        while True:
            try:
                step = next(gen)
            except StopIteration as stop:
                return stop.value
            if progress is not None:
                progress(step)


def sample_volume(
    model,
    volume,
    *,
    n_samples: int | None = None,
    mode: str = "mc_dropout",
    device: str | torch.device = "cpu",
    seed: int | None = 0,
    reducers: Iterable[Reducer] | None = None,
    **kwargs,
) -> dict[str, object]:
    """One-call convenience: build a :class:`Sampler` and run it on ``volume``."""
    sampler = Sampler(model, mode=mode, n_samples=n_samples, device=device, seed=seed, **kwargs)
    return sampler.run(volume, reducers)
