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

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Decomposition", "KeepSamples", "Moments", "Reducer", "TopK", "decompose"]


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


@dataclass
class Decomposition:
    """Top-K decomposition of the centred MC samples of each slice (METHODS.md 5.1).

    With ``two_channel`` (binary task, METHODS 5.1), each sample is the two-channel map
    ``[1 - p, p]`` flattened label axis first (length D = 2 H W). Fields, for n slices:

    - ``mean``: ``(n, C, H, W)`` float32, the MC mean (C = 2 or 1);
    - ``U``: ``(n, K, C, H, W)`` float32, the top-K left singular vectors as images;
    - ``S``: ``(n, K)`` float64, singular values (descending);
    - ``coeffs``: ``(n, K, N_s)`` float64, gamma[k, s] = <u_k, sample_s - mean> = S_k V[s, k].

    Components with a zero singular value (e.g. identical samples) have U = 0. Signs follow
    a fixed convention (the largest-|.| entry of each V column is positive); the CONSIGN set
    does not depend on it.
    """

    mean: np.ndarray
    U: np.ndarray
    S: np.ndarray
    coeffs: np.ndarray
    two_channel: bool = True

    @property
    def k(self) -> int:
        return self.U.shape[1]


def decompose(
    samples: torch.Tensor, k: int, two_channel: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of one slice's centred samples ``(N_s, H, W)`` through the N_s x N_s Gram matrix.

    Returns ``(mean (C,H,W), U (K,C,H,W), S (K,), coeffs (K, N_s))`` as in :class:`Decomposition`.
    With ``two_channel`` the decomposition is that of ``[1 - p, p]``, derived exactly from the
    one of ``p``: the centred rows are ``[-x, x]``, so the Gram matrix doubles, singular values
    and coefficients scale by sqrt(2) and ``u = [-u_p, u_p] / sqrt(2)``.
    """
    n, h, w = samples.shape
    x = samples.reshape(n, -1).double()
    mu = x.mean(0)
    xc = x - mu
    gram = xc @ xc.T
    evals, evecs = torch.linalg.eigh(gram)  # ascending
    order = torch.argsort(evals, descending=True)[:k]
    evals = evals[order].clamp_min(0)
    v = evecs[:, order]  # (N_s, K)
    signs = torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))
    v = v * torch.where(signs == 0, torch.ones_like(signs), signs)
    s = evals.sqrt()
    tol = s[:1].clamp_min(1e-300) * 1e-7 if s.numel() else s
    good = s > tol
    u = torch.zeros(x.shape[1], s.numel(), dtype=x.dtype, device=x.device)
    if good.any():
        u[:, good] = (xc.T @ v[:, good]) / s[good]
    coeffs = (v * s).T  # (K, N_s)
    mu = mu.reshape(1, h, w)
    u = u.T.reshape(-1, 1, h, w)
    if two_channel:
        r2 = 2.0**0.5
        mu = torch.cat([1.0 - mu, mu], dim=0)
        u = torch.cat([-u, u], dim=1) / r2
        s = s * r2
        coeffs = coeffs * r2
    return (
        mu.float().cpu().numpy(),
        u.float().cpu().numpy(),
        s.cpu().numpy(),
        coeffs.cpu().numpy(),
    )


class TopK(Reducer):
    """Per-slice top-K decomposition for CONSIGN (result key ``topk``: a :class:`Decomposition`).

    K is capped at N_s - 1 (the rank of centred samples). Memory per slice: K x C x H x W float32.
    """

    def __init__(self, k: int = 5, two_channel: bool = True):
        if k < 1:
            raise ValueError("k must be >= 1")
        self.k = k
        self.two_channel = two_channel
        self.out: Decomposition | None = None

    def start(self, n_slices, shape, n_samples):
        if n_samples < 2:
            raise ValueError("a top-K decomposition needs at least 2 samples")
        k = min(self.k, n_samples - 1)
        c = 2 if self.two_channel else 1
        self.out = Decomposition(
            mean=np.zeros((n_slices, c, *shape), np.float32),
            U=np.zeros((n_slices, k, c, *shape), np.float32),
            S=np.zeros((n_slices, k), np.float64),
            coeffs=np.zeros((n_slices, k, n_samples), np.float64),
            two_channel=self.two_channel,
        )

    def update(self, z, samples):
        mu, u, s, g = decompose(samples, self.out.k, self.two_channel)
        self.out.mean[z], self.out.U[z], self.out.S[z], self.out.coeffs[z] = mu, u, s, g

    def result(self):
        return {"topk": self.out}

    def nbytes(self, n_slices, shape, n_samples):
        c = 2 if self.two_channel else 1
        k = min(self.k, max(1, n_samples - 1))
        return 4 * n_slices * (k + 1) * c * shape[0] * shape[1] + 8 * n_slices * k * (n_samples + 1)
