"""Build ``sample_data/synthetic_samples.npz``: the synthetic NPZ the README demo evaluates.

Deterministic from the seed: ``python scripts/make_synthetic_samples.py`` rebuilds the shipped
file byte for byte (same numpy). Contents follow the README's NPZ contract: ``samples``
(300, 8, 32, 32) float16 Monte-Carlo foreground probabilities of a simulated model, ``masks``
(300, 32, 32) uint8, ``images`` (300, 32, 32) float16, and ``contrast`` (300,) per-lesion
contrast (0 for the ~5% of units without a lesion, which the methods exclude and count).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_consign.synthetic import lesion_cases

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "sample_data" / "synthetic_samples.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    d = lesion_cases(args.n, size=32, n_samples=8, seed=args.seed, empty_fraction=0.05)
    np.savez_compressed(
        args.out,
        samples=d["samples"].astype(np.float16),
        masks=d["masks"],
        images=d["images"].astype(np.float16),
        contrast=d["contrast"],
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
