"""Sampling folders of labelled scans for calibrate and evaluate: one job per scan.

Scans are paired by :mod:`napari_consign.cases`; each is sampled by
:func:`napari_consign.scan_sampling.sample_scan` under a seed derived from ``(--seed, scan index)``,
serially or on Dask (:func:`.options.map_scaled`), so the units are the same either way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import CLIError
from .options import map_scaled, positive_int


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    """``--model``, ``--mode`` and ``--n-samples``: how scans are sampled."""
    p.add_argument("--model", type=Path, action="append", help="model file(s); default bundled")
    p.add_argument("--mode", choices=("mc_dropout", "tta", "ensemble"), default="mc_dropout")
    p.add_argument("--n-samples", type=positive_int, default=10, help="N_s per slice (default 10)")


def say(args: argparse.Namespace, text: str) -> None:
    """A progress note on stderr (not with ``--quiet``)."""
    if not args.quiet:
        print(text, file=sys.stderr)


def sample_folders(
    args: argparse.Namespace, folders: list[Path], keep: bool, device: str
) -> tuple[list[list], str]:
    """Sample every scan of ``folders`` on ``device``; per folder, the sets of its scans.

    Returns ``(groups, model identity)``; scans whose mask is empty everywhere are left out
    and named in a note. ``keep``: keep the raw samples (CONSIGN, pixel-wise, variance).
    """
    from ..cases import find_case_pairs
    from ..scan_sampling import ScanJob, sample_scan, scan_seed

    if args.n_samples < 1:
        raise CLIError("--n-samples must be at least 1")
    pairs = [find_case_pairs(f) for f in folders]
    mode = "ensemble" if len(args.model or ()) > 1 else args.mode
    flat = [pair for group in pairs for pair in group]
    jobs = [
        ScanJob(
            i,
            image,
            mask,
            scan_seed(args.seed, i),
            tuple(args.model or ()),
            mode,
            args.n_samples,
            device,
            keep,
        )
        for i, (image, mask) in enumerate(flat)
    ]
    results = map_scaled(sample_scan, jobs, args, "sampling scans")
    empty_scans = [r["name"] for r in results if r["data"] is None]
    say(
        args,
        f"{len(results)} scan(s): {sum(r['n_units'] for r in results)} slices with structure "
        f"become 2D units; {sum(r['n_empty'] for r in results)} slices with an empty mask are "
        "left out"
        + (f" (scans without structure: {', '.join(empty_scans[:3])})" if empty_scans else ""),
    )
    identity = next((r["identity"] for r in results if r["data"] is not None), None)
    if identity is None:
        raise CLIError("every mask is empty: no slice has structure")
    out, start = [], 0
    for group in pairs:
        chunk = results[start : start + len(group)]
        out.append([r["data"] for r in chunk if r["data"] is not None])
        start += len(group)
    return out, identity
