"""Build the shipped calibration bundles: the bundled model's samples, every method, fitted.

    python scripts/make_bundles.py [--n-samples 10] [--alpha 0.1] [--methods crc,coat]

1. Samples the shipped 2D cases (`sample_data/cases2d.npz`: splits threshold, calibration,
   test) with the bundled MC-dropout UNet (seeded); the samples are cached in `out/` as NPZ
   contract files (not shipped: they are large and rebuilt by this script), which
   `napari-consign evaluate` reads as they are.
   Scores outside each case's body mask (`napari_consign.body_mask`, the model card's rule)
   are set to 0, as the analysis does for a scan, so the bands' calibration matches what
   the widget shows.
2. Fits each method: threshold predictors (AT, COAT) train on the `threshold` split, every
   method calibrates on the `calibration` split (CONSIGN on its first `--consign-n` cases, on
   the `--consign-alphas` grid: its membership checks are slow on 112 x 96 images).
3. Evaluates each fitted method on the `test` split at `--alpha` (CONSIGN: at the smallest
   alpha of its grid that has a set, on the first `--consign-test-n` test cases) and only then
   saves its bundle in `sample_data/bundles/<method>.npz` with the model identity, the model
   card and the settings: a method that cannot answer leaves the shipped bundle untouched.
   On the healthy test cases it also reports how often the inner band is empty and the mean
   inner loss with healthy scans counted (`1[inner non-empty]` for them, docs/guarantees.md).
   The figures go to `sample_data/bundles/evaluation.json` (other methods' entries are kept)
   and are printed.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_consign._sample_data import load_cases
from napari_consign.body_mask import BODY_RULE, body_mask, restrict_scores
from napari_consign.calibration import save_bundle
from napari_consign.conformal.consign_calibration import LambdaMaxError
from napari_consign.conformal.evaluation import split_metrics
from napari_consign.conformal.metrics import inner_loss
from napari_consign.conformal.registry import METHODS, MethodOptions
from napari_consign.npz_contract import load_segmentation_set
from napari_consign.pipeline import fit_methods, sample_cases, save_npz_contract

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "sample_data" / "bundles"
CACHE = ROOT / "out" / "model_samples"
REPORTED = ("marginal_coverage", "coverage_gap", "inner_loss", "outer_area", "inner_area")


def sampled_split(split: str, sampler, n_samples: int):
    """The model's samples of one split of the shipped cases (cached NPZ contract file)."""
    cache = CACHE / f"{split}_ns{n_samples}_{sampler.identity[:12]}.npz"
    if cache.is_file():
        return load_segmentation_set(cache)
    cases = load_cases(split)
    t0 = time.perf_counter()
    data = sample_cases(sampler, cases["images"], cases["masks"])
    print(f"sampled {split}: {len(data)} cases in {time.perf_counter() - t0:.0f} s")
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_npz_contract(cache, data, model_identity=np.array(sampler.identity))
    return data


def with_body_rule(data):
    """``data`` with every score outside its case's body mask set to 0."""
    bodies = np.stack([body_mask(img) for img in data.images])
    return replace(data, scores=restrict_scores(data.scores, bodies))


def healthy_metrics(method, test, alpha: float) -> dict:
    """Inner-band figures with the healthy test cases counted (docs/guarantees.md)."""
    healthy = ~test.masks.reshape(len(test), -1).any(1)
    if not healthy.any():
        return {}
    losses, empty = [], []
    for (inner, _), truth in zip(method.predict_masks(test, alpha), test.masks, strict=True):
        if truth.any():
            losses.append(inner_loss(inner, truth))
        else:
            losses.append(float(inner.any()))
            empty.append(not inner.any())
    return {
        "n_test_healthy": int(healthy.sum()),
        "healthy_inner_empty_rate": float(np.mean(empty)),
        "inner_loss_with_healthy": float(np.mean(losses)),
    }


def _first(data, n: int):
    return data.subset(np.arange(min(n, len(data))))


def fit_and_evaluate(name: str, args, options: MethodOptions, train, cal, test):
    """``(method, alpha, metrics)`` of one method, or None when it has no set to ship."""
    if name != "consign":
        method = fit_methods([name], cal, train, options)[name]
        metrics = split_metrics(method, test, args.alpha)
        return method, args.alpha, {**metrics, **healthy_metrics(method, test, args.alpha)}
    method = fit_methods([name], _first(cal, args.consign_n), None, options)[name]
    grid = [float(a) for a in args.consign_alphas.split(",")]
    answered = sorted(method.calibrate_alphas(grid))
    if not answered:
        print(f"consign: no alpha of {grid} has a set (lambda_max reached); bundle not saved")
        return None
    alpha = next((a for a in answered if a >= args.alpha), answered[-1])
    try:
        return method, alpha, split_metrics(method, _first(test, args.consign_test_n), alpha)
    except LambdaMaxError as exc:  # pragma: no cover - calibrate_alphas checked the levels
        print(f"consign: {exc}; bundle not saved")
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=10)
    parser.add_argument("--alpha", type=float, default=0.1, help="alpha of the test report")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beta", type=float, default=0.9, help="CONSIGN / pixel-wise beta")
    parser.add_argument(
        "--score-space",
        choices=("probability", "logit"),
        default="probability",
        help="AT/COAT training loss space ('probability': the paper's)",
    )
    parser.add_argument(
        "--consign-n",
        type=int,
        default=100,
        help="calibration cases for CONSIGN (its membership checks are slow)",
    )
    parser.add_argument("--consign-test-n", type=int, default=100, help="CONSIGN test cases")
    parser.add_argument(
        "--consign-alphas", default="0.1,0.2,0.3,0.4,0.5", help="alpha grid of the CONSIGN bundle"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1 is fastest on small shared machines)",
    )
    args = parser.parse_args()

    import torch

    from napari_consign.models import Sampler, load_builtin_model

    torch.set_num_threads(args.threads)

    model = load_builtin_model()
    sampler = Sampler(model, n_samples=args.n_samples, seed=args.seed, device="cpu")
    train, cal, test = (
        with_body_rule(sampled_split(s, sampler, args.n_samples))
        for s in ("threshold", "calibration", "test")
    )
    names = [m for m in args.methods.split(",") if m]
    options = MethodOptions(
        seed=args.seed, alpha=args.alpha, beta=args.beta, score_space=args.score_space
    )
    extra = {
        "n_samples": args.n_samples,
        "mode": "mc_dropout",
        "seed": args.seed,
        "calibration": "sample_data/cases2d.npz, split 'calibration' (500 lesion + 100 healthy)",
        "body_rule": BODY_RULE,
        "card": model.info.get("card", {}),
    }
    report = {"alpha": args.alpha, "n_test": len(test), "model_id": sampler.identity, **extra}
    report.pop("card")  # in every bundle; unet_lesions.json holds it too
    report["methods"] = {}
    BUNDLES.mkdir(parents=True, exist_ok=True)
    print("\n| method | alpha | coverage | gap | inner loss | outer px | inner px | fit s |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        t0 = time.perf_counter()
        done = fit_and_evaluate(name, args, options, train, cal, test)
        if done is None:
            continue
        method, alpha, metrics = done
        seconds = time.perf_counter() - t0
        settings = {"beta": args.beta} if name in ("consign", "pixelwise") else {}
        if name in ("at", "coat"):
            settings["score_space"] = args.score_space
        save_bundle(
            BUNDLES / f"{name}.npz",
            method,
            sampler.identity,
            overwrite=True,
            extra={**extra, **settings, "n_cal_units": method.n_used},
        )
        report["methods"][name] = {
            "alpha": alpha,
            "n_test_used": metrics["n_test_used"],
            "seconds": round(seconds, 1),
            **settings,
            **{k: v for k, v in metrics.items() if not k.startswith(("n_test", "n_cal"))},
        }
        cells = " | ".join(f"{metrics[k]:.3f}" for k in REPORTED[:3])
        areas = " | ".join(f"{metrics[k]:.0f}" for k in REPORTED[3:])
        print(f"| {name} | {alpha:g} | {cells} | {areas} | {seconds:.0f} |", flush=True)
    previous = BUNDLES / "evaluation.json"  # keep the other methods' entries
    if previous.is_file():
        old = json.loads(previous.read_text())
        if old.get("model_id") == report["model_id"]:
            report["methods"] = {**old["methods"], **report["methods"]}
    previous.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
