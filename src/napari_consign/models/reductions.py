"""Per-slice reductions of Monte-Carlo samples.

The Sampler hands each reducer one slice's samples at a time, a tensor ``(N_s, H, W)`` of
foreground probabilities on the compute device, and then drops them; reducers keep only what the
methods need, so memory grows with the volume, not with N_s x volume.

Interface (subclass :class:`Reducer`, or duck-type it):

- ``start(n_slices, shape, n_samples)``: called once before the first slice;
- ``update(z, samples)``: called once per slice (any order: the visible slice comes first);
- ``result() -> dict[str, object]``: called at the end; the dicts of all reducers are merged,
  so keys must be unique.

Arrays are allocated in ``start`` and filled in ``update``, so a consumer may read the slices
done so far while sampling runs (each progress report names the slice just finished).
"""

from __future__ import annotations

import numpy as np
import torch

from ..conformal.consign_decomposition import DecompositionStack

__all__ = ["Decomposition", "DecompositionStack", "KeepSamples", "Moments", "Reducer", "TopK"]


class Reducer:
    """Base class: see the module docstring."""

    def start(self, n_slices: int, shape: tuple[int, int], n_samples: int) -> None:
        raise NotImplementedError

    def update(self, z: int, samples: torch.Tensor) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, object]:
        raise NotImplementedError

    def nbytes(self, n_slices: int, shape: tuple[int, int], n_samples: int) -> int:
        """Host memory this reducer will hold (for an estimate before a run)."""
        return 0


class Moments(Reducer):
    """Per-pixel MC mean and variance of the foreground probability.

    Result: ``mean`` and ``var`` arrays ``(n_slices, H, W)``, float32. The variance uses
    ``ddof`` (default 1, the unbiased sample variance; 0 when N_s == 1).
    """

    def __init__(self, ddof: int = 1):
        self.ddof = ddof
        self.mean: np.ndarray | None = None
        self.var: np.ndarray | None = None

    def start(self, n_slices, shape, n_samples):
        self.mean = np.zeros((n_slices, *shape), np.float32)
        self.var = np.zeros((n_slices, *shape), np.float32)
        self._ddof = self.ddof if n_samples > self.ddof else 0

    def update(self, z, samples):
        s = samples.float()
        self.mean[z] = s.mean(0).cpu().numpy()
        self.var[z] = s.var(0, correction=self._ddof).cpu().numpy()

    def result(self):
        return {"mean": self.mean, "var": self.var}

    def nbytes(self, n_slices, shape, n_samples):
        return 2 * 4 * n_slices * shape[0] * shape[1]


class KeepSamples(Reducer):
    """Keep the raw samples: of every slice (``slices=None``) or of the given slices only.

    Result ``samples``: an array ``(n_slices, N_s, H, W)`` when all slices are kept, else a
    dict ``{z: (N_s, H, W)}``; dtype float16 by default (probabilities in [0, 1] lose at most
    about 2.4e-4 in float16) or float32.
    """

    def __init__(self, slices=None, dtype=np.float16):
        self.slices = None if slices is None else {int(z) for z in slices}
        self.dtype = np.dtype(dtype)
        self.samples = None

    def start(self, n_slices, shape, n_samples):
        if self.slices is None:
            self.samples = np.zeros((n_slices, n_samples, *shape), self.dtype)
        else:
            self.samples = {}

    def update(self, z, samples):
        if self.slices is None:
            self.samples[z] = samples.cpu().numpy().astype(self.dtype, copy=False)
        elif z in self.slices:
            self.samples[z] = samples.cpu().numpy().astype(self.dtype, copy=True)

    def result(self):
        return {"samples": self.samples}

    def nbytes(self, n_slices, shape, n_samples):
        n = n_slices if self.slices is None else len(self.slices)
        return self.dtype.itemsize * n * n_samples * shape[0] * shape[1]


#: CONSIGN's per-slice decompositions (the name ``models.Decomposition`` is kept for them).
Decomposition = DecompositionStack


class TopK(Reducer):
    """Per-slice top-K decomposition for CONSIGN (docs/methods.md §5.1), streamed.

    Result key ``topk``: a :class:`~napari_consign.conformal.consign_decomposition.
    DecompositionStack` with one binary unit per slice (the two channels ``[1 - p, p]``),
    computed by the same code as CONSIGN's own decomposition of raw samples, so
    ``CONSIGN.bands`` and ``CONSIGN.sample`` give exactly the same results from it. Per slice
    it keeps the float32 foreground mean and top-K components (``(K + 1) x H x W`` float32),
    the K singular values and the ``K x N_s`` coefficients (float64); the slice's samples are
    dropped after :meth:`update`. K is capped at N_s - 1 (the rank of centred samples).
    """

    def __init__(self, k: int = 5):
        if int(k) != k or k < 1:
            raise ValueError("k must be a positive integer")
        self.k = int(k)
        self.out: DecompositionStack | None = None

    def start(self, n_slices, shape, n_samples):
        if n_samples < 2:
            raise ValueError("a top-K decomposition needs at least 2 samples")
        k = min(self.k, n_samples - 1)
        self.out = DecompositionStack.empty(n_slices, tuple(shape), k, n_samples)

    def update(self, z, samples):
        self.out.fill(z, samples.detach().float().cpu().numpy()[None])

    def result(self):
        return {"topk": self.out}

    def nbytes(self, n_slices, shape, n_samples):
        k = min(self.k, max(1, n_samples - 1))
        return DecompositionStack.nbytes_for(n_slices, tuple(shape), k, n_samples)
