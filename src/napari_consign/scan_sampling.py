"""Sampling one labelled scan in a worker process: the job and its seed.

``napari-consign calibrate`` and ``evaluate`` map :func:`sample_scan` over the scans of a
folder (:func:`.parallel.map_jobs`); each process loads the model once and reuses it.
Torch is imported when a sampler is built, not by importing this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .analysis.session import ModelSpec, cached_sampler
from .body_mask import restrict_scores
from .cases import read_pair
from .conformal.dataset import SegmentationSet
from .models.card import card_of
from .pipeline import sample_cases


def scan_seed(seed: int, index: int) -> int:
    """The sampling seed of scan number ``index``: fixed, whichever worker samples it."""
    return int(np.random.SeedSequence((int(seed), int(index))).generate_state(1)[0] >> 1)


@dataclass(frozen=True)
class ScanJob:
    """One labelled scan to sample: its paths, seed and the sampler settings."""

    index: int
    image: Path
    mask: Path
    seed: int
    model_paths: tuple[Path, ...]
    mode: str
    n_samples: int
    device: str
    keep_samples: bool


def sample_scan(job: ScanJob, _shared: Any = None) -> dict:
    """Sample the slices with structure of one scan (a job of :func:`.parallel.map_jobs`).

    With a model card the scan is resampled to the card's spacing and scores outside its body
    mask are 0, as in the analysis of a scan (:func:`.cases.read_pair`).

    Returns ``{"name", "n_empty", "n_units", "data", "identity"}``; ``data`` is a
    :class:`SegmentationSet` (None when every slice is empty), without the samples unless
    ``job.keep_samples``. One torch thread, so the numbers do not depend on the worker layout.
    """
    # the process's one cached sampler: each model is loaded once per process, not per scan
    sampler = cached_sampler(ModelSpec(job.model_paths, job.mode, job.n_samples, job.device))
    # seen as the analysis sees a scan: on the model card's grid, scores bounded by the body
    images, masks, n_empty, body = read_pair(job.image, job.mask, card_of(sampler))
    out = {"name": job.image.name, "n_empty": n_empty, "n_units": len(images), "data": None}
    if len(images) == 0:
        return out
    sampler.seed = job.seed  # dropout masks are drawn per slice from (seed, z) only
    sampler.num_threads = 1
    data = sample_cases(sampler, images, masks)
    scores = data.scores if body is None else restrict_scores(data.scores, body)
    samples = data.samples if job.keep_samples else None
    out["data"] = SegmentationSet(samples, scores, data.masks, data.images)
    out["identity"] = sampler.identity
    return out
