"""Build the shipped calibration bundles: the bundled model's samples, every method, fitted.

    python scripts/make_bundles.py [--n-samples 10] [--alpha 0.1]

1. Samples the shipped 2D cases (`sample_data/cases2d.npz`: splits threshold, calibration,
   test) with the bundled MC-dropout UNet (seeded); the samples are cached in `out/` (not
   shipped: they are large and rebuilt by this script).
2. Fits every registered method: threshold predictors (AT, COAT) train on the `threshold`
   split, every method calibrates on the `calibration` split.
3. Saves one bundle per method in `sample_data/bundles/<method>.npz` with the model identity
   and the sampling settings, and evaluates each bundle on the `test` split (written to
   `sample_data/bundles/evaluation.json` and printed as a table).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from napari_consign._sample_data import load_cases
from napari_consign.calibration import save_bundle
from napari_consign.conformal.metrics import coverage_gap, marginal_coverage, unit_metrics
from napari_consign.conformal.registry import METHODS, MethodOptions
from napari_consign.npz_contract import load_segmentation_set
from napari_consign.pipeline import fit_methods, sample_cases, save_npz_contract

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "sample_data" / "bundles"
CACHE = ROOT / "out" / "model_samples"


def sampled_split(split: str, sampler, n_samples: int):
    cache = CACHE / f"{split}_ns{n_samples}_{sampler.identity[:12]}.npz"
    if cache.is_file():
        return load_segmentation_set(cache)
    cases = load_cases(split)
    t0 = time.perf_counter()
    data = sample_cases(sampler, cases["images"], cases["masks"])
    print(f"sampled {split}: {len(data)} cases in {time.perf_counter() - t0:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_npz_contract(cache, data)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=0.1, help="alpha of the test report")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--consign-n",
        type=int,
        default=100,
        help="calibration cases for CONSIGN (its membership checks are slow)",
    )
    parser.add_argument(
        "--consign-alphas", default="0.1,0.2,0.3", help="alpha grid of the CONSIGN bundle"
    )
    args = parser.parse_args()

    from napari_consign.models import Sampler, load_builtin_model

    model = load_builtin_model()
    sampler = Sampler(model, n_samples=args.n_samples, seed=args.seed, device="cpu")
    train, cal, test = (
        sampled_split(s, sampler, args.n_samples) for s in ("threshold", "calibration", "test")
    )
    names = [m for m in args.methods.split(",") if m]
    options = MethodOptions(seed=args.seed, alpha=args.alpha)
    fitted, alphas = {}, {}
    for name in names:
        t0 = time.perf_counter()
        subset = cal.subset(np.arange(min(args.consign_n, len(cal)))) if name == "consign" else cal
        fitted.update(fit_methods([name], subset, train, options))
        if name == "consign":
            alphas[name] = [float(a) for a in args.consign_alphas.split(",")]
            fitted[name].calibrate_alphas(alphas[name])
        print(
            f"fitted {name} on {len(subset)} cases in {time.perf_counter() - t0:.0f} s", flush=True
        )

    BUNDLES.mkdir(parents=True, exist_ok=True)
    extra = {
        "n_samples": args.n_samples,
        "mode": "mc_dropout",
        "seed": args.seed,
        "calibration": "sample_data/cases2d.npz, split 'calibration'",
    }
    report = {
        "alpha": args.alpha,
        "n_test": len(test),
        "model_id": sampler.identity,
        **extra,
        "methods": {},
    }
    print(
        "\n| method | marginal coverage | coverage gap | inner loss | outer px | inner px |"
        "\n|---|---|---|---|---|---|"
    )
    for name, method in fitted.items():
        save_bundle(BUNDLES / f"{name}.npz", method, sampler.identity, overwrite=True, extra=extra)
        rows = [
            unit_metrics(i, o, y)
            for (i, o), y in zip(method.predict_masks(test, args.alpha), test.masks, strict=True)
        ]
        tprs = [r["tpr"] for r in rows]
        m = {
            "marginal_coverage": marginal_coverage(tprs),
            "coverage_gap": coverage_gap(tprs, args.alpha),
            "inner_loss": float(np.nanmean([r["inner_loss"] for r in rows])),
            "outer_area": float(np.mean([r["outer_voxels"] for r in rows])),
            "inner_area": float(np.mean([r["inner_voxels"] for r in rows])),
            **method.summary(args.alpha),
        }
        report["methods"][name] = m
        print(
            f"| {name} | {m['marginal_coverage']:.3f} | {m['coverage_gap']:.3f} | "
            f"{m['inner_loss']:.3f} | {m['outer_area']:.1f} | {m['inner_area']:.1f} |"
        )
    previous = BUNDLES / "evaluation.json"  # keep the other methods' entries
    if previous.is_file():
        old = json.loads(previous.read_text())
        if old.get("model_id") == report["model_id"]:
            report["methods"] = {**old["methods"], **report["methods"]}
    previous.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
