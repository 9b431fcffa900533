"""Threshold predictor (AT/COAT f_D): training time and per-image inference time.

    python benchmarks/bench_threshold_predictor.py [--n 75] [--size 32] [--epochs 60]

Trains on ``n`` synthetic units (CPU with 1 and 2 torch threads; CUDA when available) and
times inference per image for one alpha and for the whole 50-level slider grid.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from napari_consign.conformal import DEFAULT_ALPHAS, SegmentationSet
from napari_consign.conformal.threshold_inputs import input_channels, predictor_inputs
from napari_consign.conformal.threshold_predictor import PredictorConfig
from napari_consign.conformal.threshold_training import train_predictor
from napari_consign.synthetic import lesion_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=75)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()

    d = lesion_cases(args.n + 100, size=args.size, n_samples=4, seed=0)
    data = SegmentationSet.from_samples(d["samples"], d["masks"], d["images"])
    train = data.subset(slice(0, args.n))
    test = data.subset(slice(args.n, None))
    config = PredictorConfig(
        epochs=args.epochs, patience=args.epochs, in_channels=input_channels(train.images, False)
    )
    x_train = predictor_inputs(
        train.scores, train.images, None, config.input_size, config.score_space
    )
    x_test = predictor_inputs(test.scores, test.images, None, config.input_size, config.score_space)

    runs = [("cpu", 1), ("cpu", 2)] + ([("cuda", None)] if torch.cuda.is_available() else [])
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
        f"{args.n} training units of {args.size}x{args.size}, {args.epochs} epochs, "
        f"input {config.input_size}x{config.input_size}"
    )
    print(
        "| device | threads | training (s) | inference per image, 1 alpha (ms) |"
        " per image, 50 alphas (ms) |"
    )
    print("|---|---|---|---|---|")
    for device, threads in runs:
        t0 = time.perf_counter()
        trained = train_predictor(
            x_train, train.scores, train.masks, config, device=device, threads=threads
        )
        t_train = time.perf_counter() - t0
        if threads:
            torch.set_num_threads(threads)
        t0 = time.perf_counter()
        trained.predict(x_test, 0.1)
        t_one = (time.perf_counter() - t0) / len(test) * 1e3
        t0 = time.perf_counter()
        for a in DEFAULT_ALPHAS[4:]:
            trained.predict(x_test, float(a))
        t_grid = (time.perf_counter() - t0) / len(test) * 1e3
        print(f"| {device} | {threads or '-'} | {t_train:.1f} | {t_one:.3f} | {t_grid:.2f} |")


if __name__ == "__main__":
    main()
