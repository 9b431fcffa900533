"""Exact CRC (sorted breakpoints) against a per-threshold grid loop, on the same data.

    python benchmarks/bench_crc.py --n 1000 --size 256

Prints a table: time to calibrate, thresholds at alpha, and the speed ratio. The exact fit
computes both bands' whole risk curves; after it, a threshold for any alpha is a lookup (also
timed). The grid loop (MAPIE's semantics, 0.01 steps, outer band only) scans one threshold at a
time over every voxel.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from napari_consign.conformal import CRC
from napari_consign.conformal.grid_reference import grid_outer_threshold
from napari_consign.conformal.threshold_losses import fnr_curve
from napari_consign.synthetic import lesion_cases


def _best_of(repeats: int, fn):
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    d = lesion_cases(args.n, size=args.size, n_samples=1, seed=0)
    scores, masks = d["samples"][:, 0], d["masks"]
    grid = np.arange(0, 1, 0.01)

    t_exact, crc = _best_of(args.repeats, lambda: CRC().fit(scores, masks))
    pairs = [(s, m != 0) for s, m in zip(scores, masks, strict=True)]
    t_outer, _ = _best_of(args.repeats, lambda: fnr_curve(pairs))
    t_lookup, tau = _best_of(args.repeats, lambda: crc.outer_threshold(args.alpha))
    t_grid, lam = _best_of(
        args.repeats, lambda: grid_outer_threshold(scores, masks, args.alpha, grid)
    )

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{args.n} images of {args.size}x{args.size}, alpha = {args.alpha}, "
        f"{int(masks.sum()):,} GT voxels; best of {args.repeats}"
    )
    print(f"| {'method':<44} | {'time (s)':>9} | {'outer threshold':>16} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 18}|")
    print(f"| {'exact CRC fit (outer + inner risk curves)':<44} | {t_exact:9.3f} | {tau:16.6f} |")
    print(f"| {'exact CRC, outer risk curve only':<44} | {t_outer:9.3f} | {tau:16.6f} |")
    print(f"| {'exact CRC threshold lookup after fit':<44} | {t_lookup:9.6f} | {tau:16.6f} |")
    steps = round(lam / 0.01) + 2  # grid values visited: up to the first invalid one
    label = f"grid loop, p > lam, {steps} of 100 steps (outer)"
    print(f"| {label:<44} | {t_grid:9.3f} | {lam:16.2f} |")
    print(
        f"speed ratio grid / exact: {t_grid / t_exact:.1f}x (both bands), "
        f"{t_grid / t_outer:.1f}x (outer only), {t_grid / t_lookup:,.0f}x per new alpha; "
        "exact threshold in "
        f"(lam_grid, lam_grid + 0.01]: {lam < tau <= lam + 0.01 + 1e-12}"
    )


if __name__ == "__main__":
    main()
