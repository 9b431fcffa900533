"""Train the bundled MC-dropout UNet on regenerated training cases (CPU, seeded).

The training cases come from ``make_sample_data.training_cases`` (split "train": independent of
the shipped threshold/calibration/test cases). Writes ``sample_data/unet_lesions.pt`` (a plain
state dict, loaded with ``torch.load(weights_only=True)``) and ``sample_data/unet_lesions.json``
(architecture, input normalisation, training settings, test Dice, sha256 of the weights).

    python scripts/train_model.py                  # the shipped weights: 811 s on one thread
    python scripts/train_model.py --n-train 16000 --steps 12000 --threads 2 --val-every 1000 \
        --out /tmp/m                               # the longer run of 2026-12-03 (not shipped)
    python scripts/train_model.py --varied --n-train 5000 --steps 6000   # issue 15's variant
    python scripts/train_model.py --steps 50 --out /tmp/m   # a quick smoke run
    python scripts/train_model.py --evaluate-only           # re-measure the shipped weights

Bitwise-identical weights need the same torch version and thread count.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_sample_data as msd  # noqa: E402

from napari_consign.body_mask import BODY_RULE  # noqa: E402
from napari_consign.models.card import ModelCard  # noqa: E402
from napari_consign.models.loading import file_sha256, load_model  # noqa: E402
from napari_consign.models.preprocess import DEFAULT_NORMALIZATION, normalize  # noqa: E402
from napari_consign.models.reductions import Moments  # noqa: E402
from napari_consign.models.sampler import Sampler  # noqa: E402
from napari_consign.models.unet import UNet, UNetConfig  # noqa: E402
from napari_consign.ood import build_intensity_reference  # noqa: E402

NAME = "unet_lesions"
AUGMENTATION = "left-right flip (anatomy and lesions are augmented by the generator)"
AUGMENTATION_VARIED = (
    "left-right flip; the generator varies anatomy (similarity transform, elastic warp, "
    "stretch), tissue contrast (random monotone curve), lesion contrast (half faint), bias "
    "field, blur, resolution (down 1.3-2.5x and back) and Rician noise; 25% healthy cases"
)


def dice_per_case(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    p = pred.reshape(len(pred), -1).astype(bool)
    t = truth.reshape(len(truth), -1).astype(bool)
    inter = (p & t).sum(1)
    denom = p.sum(1) + t.sum(1)
    return np.where(denom > 0, 2 * inter / np.maximum(denom, 1), 1.0)


def random_patches(x, y, size, rng, p_lesion=0.6):
    """Crop (size x size) patches, centred near a lesion pixel with probability p_lesion."""
    h, w = x.shape[-2:]
    xs, ys = [], []
    for i in range(len(x)):
        fg = torch.nonzero(y[i])
        if len(fg) and rng.random() < p_lesion:
            cy, cx = fg[rng.integers(len(fg))].tolist()
            top = int(np.clip(cy - rng.integers(8, size - 8), 0, h - size))
            left = int(np.clip(cx - rng.integers(8, size - 8), 0, w - size))
        else:
            top, left = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        xs.append(x[i, :, top : top + size, left : left + size])
        ys.append(y[i, top : top + size, left : left + size])
    return torch.stack(xs), torch.stack(ys)


VALIDATION_OFFSET = 1_000_000  # 'train'-split indices far beyond any --n-train


def validation_cases(seed: int, varied: bool, n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Held-out cases from the training distribution, for monitoring only (never the test)."""
    cases = [msd.make_case_2d(seed, "train", VALIDATION_OFFSET + i, varied) for i in range(n)]
    images = np.stack([c["image"].astype(np.float32) * c["scale"] for c in cases])
    return images, np.stack([c["mask"] for c in cases])


def eval_probs(model: torch.nn.Module, images: np.ndarray, norm: dict) -> np.ndarray:
    """Deterministic (eval-mode, dropout off) foreground probabilities."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), 32):
            x = normalize(torch.from_numpy(images[i : i + 32])[:, None], norm)
            out.append(torch.softmax(model(x), 1)[:, 1].numpy())
    return np.concatenate(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "sample_data")
    ap.add_argument("--seed", type=int, default=msd.SEED)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument(
        "--varied",
        action="store_true",
        help="train on the varied training cases (anatomy/contrast/resolution variation, "
        "faint and healthy cases; measured worse, see sample_data/README.md)",
    )
    ap.add_argument("--patch", type=int, default=64, help="square training patch (0: whole slice)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--base-channels", type=int, default=16, help="UNet width (first level)")
    ap.add_argument(
        "--val-every",
        type=int,
        default=0,
        help="print eval-mode Dice on 128 held-out 'train'-split cases every N steps (0: never; "
        "does not change the weights)",
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core CPU)"
    )
    ap.add_argument("--mc-samples", type=int, default=20, help="N_s for the MC test Dice")
    ap.add_argument(
        "--evaluate-only", action="store_true", help="re-evaluate the weights in --out, no training"
    )
    ap.add_argument("--skip-eval", action="store_true", help="train only; evaluate later")
    args = ap.parse_args(argv)
    if args.evaluate_only:
        torch.set_num_threads(args.threads)
        evaluate(args.out, args.seed, args.mc_samples)
        return 0

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    images, masks = msd.training_cases(args.n_train, args.seed, args.varied)
    t_data = time.perf_counter() - t0
    print(
        f"{args.n_train} training cases in {t_data:.1f} s; lesion pixel fraction "
        f"{masks.mean():.4f}",
        flush=True,
    )

    config = UNetConfig(
        in_channels=1,
        out_channels=2,
        base_channels=args.base_channels,
        levels=4,
        dropout=0.1,
        norm="batch",
    )
    norm = dict(DEFAULT_NORMALIZATION)
    model = UNet.from_config(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(1.0, s / args.steps))),
    )
    x_all = torch.from_numpy(images)[:, None]
    y_all = torch.from_numpy(masks.astype(np.int64))
    val = validation_cases(args.seed, args.varied) if args.val_every else None
    model.train()
    t1 = time.perf_counter()
    losses = []
    for step in range(args.steps):
        idx = torch.from_numpy(rng.choice(len(images), args.batch, replace=False))
        x = normalize(x_all[idx], norm)  # whole-slice statistics, as at inference
        y = y_all[idx]
        if args.patch:
            x, y = random_patches(x, y, args.patch, rng)
        if rng.random() < 0.5:  # left-right flip (the anatomy is nearly symmetric)
            x, y = x.flip(-1), y.flip(-1)
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        p = torch.softmax(logits, 1)[:, 1]
        inter = (p * y).sum()
        dice = 1 - (2 * inter + 1) / (p.sum() + y.sum() + 1)
        loss = ce + dice
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 100 == 0 or step == 0:
            el = time.perf_counter() - t1
            print(
                f"step {step + 1}/{args.steps} loss {np.mean(losses[-100:]):.4f} "
                f"({el:.0f} s, {el / (step + 1):.3f} s/step)",
                flush=True,
            )
        if val is not None and (step + 1) % args.val_every == 0:
            dice = dice_per_case(eval_probs(model, val[0], norm) >= 0.5, val[1])
            print(f"step {step + 1}: validation Dice {dice[val[1].any(axis=(1, 2))].mean():.4f}")
            model.train()
    t_train = time.perf_counter() - t1

    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / f"{NAME}.pt"
    torch.save(model.state_dict(), weights)

    info = {
        "name": NAME,
        "architecture": "napari_consign.models.unet.UNet",
        "config": config.to_dict(),
        "size_divisor": config.size_divisor,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "output": "logits",
        "foreground": "softmax channel 1 (binary: background, lesion)",
        "normalization": norm,
        "task": "lesion segmentation on axial 2D slices of the sample data (MNI152 T1 + synthetic "
        "lesions, 2 mm)",
        "training": {
            "script": "scripts/train_model.py",
            "seed": args.seed,
            "cases": args.n_train,
            "cases_split": "train (independent of threshold/calibration/test)",
            "steps": args.steps,
            "batch": args.batch,
            "optimizer": f"AdamW lr {args.lr} wd 1e-4, {warm} warm-up steps, cosine decay",
            "loss": "cross-entropy + soft Dice (foreground)",
            "patch": args.patch or "whole slice",
            "patch_sampling": "60% centred near a lesion pixel, else uniform",
            "augmentation": AUGMENTATION_VARIED if args.varied else AUGMENTATION,
            "threads": args.threads,
            "data_seconds": round(t_data, 1),
            "train_seconds": round(t_train, 1),
            "torch": torch.__version__,
        },
        "sha256": file_sha256(weights),
    }
    # the sidecar JSON must exist before reloading: it carries the dropout rate, which a state
    # dict does not (without it the loader would fall back to its default)
    (args.out / f"{NAME}.json").write_text(json.dumps(info, indent=1) + "\n")
    if not args.skip_eval:
        evaluate(args.out, args.seed, args.mc_samples)
    print(f"wrote {weights} ({weights.stat().st_size / 1e6:.2f} MB); training {t_train:.0f} s")
    return 0


CONTRAST_BINS = ((0.0, 0.1), (0.1, 0.2), (0.2, 10.0))  # faintest lesion's |contrast|


def model_card(info: dict, evaluation: dict, seed: int) -> dict:
    """The model card (``napari_consign.models.card``) of the trained model, as a dict.

    The intensity reference is the shipped ``threshold`` split (the scans the bundles are made
    for, without the training-only contrast variation), regenerated from ``seed``.
    """
    images = [
        c["image"].astype(np.float32) * c["scale"]
        for c in (msd.make_case_2d(seed, "threshold", i) for i in range(msd.SPLITS["threshold"]))
    ]
    ref = build_intensity_reference(images, float(info["normalization"].get("upper", 99.5)))
    t = info["training"]
    card = ModelCard(
        modality="MR",
        sequence="T1-weighted",
        spacing_zyx=(msd.SPACING_MM,) * 3,
        orientation="axial slices (y, x) of the LPS-reoriented (z, y, x) array",
        normalization=info["normalization"],
        body_mask=BODY_RULE,
        training=(
            f"{t['cases']} regenerated 2D 'train' cases of the MNI152 2009a T1 template "
            f"(nilearn, 2 mm) with synthetic lesions; augmentation: {t['augmentation']}; "
            f"{t['steps']} steps, seed {t['seed']}"
        ),
        test_dice={
            "lesion_cases_mc_mean": evaluation["dice_mc_mean_mean"],
            "faintest_bin_mc_mean": evaluation["dice_mc_by_contrast"]["<0.1"],
            "split": evaluation["split"],
        },
        intensity=ref,
    )
    return card.to_dict()


def evaluate(folder: Path, seed: int, mc_samples: int) -> dict:
    """Dice on the test split (regenerated: the same arrays as cases2d.npz); updates the JSON.

    Dice is measured on the lesion cases (per-case mean, overall and by the faintest lesion's
    contrast); on the healthy test cases, the fraction whose MC-mean map has no pixel >= 0.5.
    Also writes the model card.
    """
    weights = folder / f"{NAME}.pt"
    meta = folder / f"{NAME}.json"
    info = json.loads(meta.read_text())
    test = [msd.make_case_2d(seed, "test", i) for i in range(msd.SPLITS["test"])]
    timg = np.stack([c["image"].astype(np.float32) * c["scale"] for c in test])
    tmask = np.stack([c["mask"] for c in test])
    lesion = tmask.reshape(len(tmask), -1).any(1)
    contrast = np.array([c["min_abs_contrast"] for c in test])
    loaded = load_model(weights)  # through the public loader, with the sidecar JSON
    norm = loaded.normalization
    p_eval = eval_probs(loaded.module, timg, norm)
    d_eval = dice_per_case(p_eval >= 0.5, tmask)
    sampler = Sampler(loaded, n_samples=mc_samples, device="cpu", seed=0)
    t2 = time.perf_counter()
    mc = sampler.run(timg, [Moments()])["mean"]
    t_mc = time.perf_counter() - t2
    d_mc = dice_per_case(mc >= 0.5, tmask)
    pred, truth = mc[lesion] >= 0.5, tmask[lesion] > 0
    pooled = float(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))
    by_bin = {}
    for lo, hi in CONTRAST_BINS:
        sel = lesion & (contrast >= lo) & (contrast < hi)
        key = f"<{hi:g}" if lo == 0 else (f">={lo:g}" if hi > 1 else f"{lo:g}-{hi:g}")
        by_bin[key] = round(float(d_mc[sel].mean()), 4)
    healthy = ~lesion
    info["evaluation"] = {
        "split": f"test ({lesion.sum()} lesion + {healthy.sum()} healthy cases of cases2d.npz)",
        "threshold": 0.5,
        "dice_eval_mode_mean": round(float(d_eval[lesion].mean()), 4),
        "dice_mc_mean_mean": round(float(d_mc[lesion].mean()), 4),
        "dice_mc_mean_pooled": round(pooled, 4),
        "dice_mc_by_contrast": by_bin,
        "cases_by_contrast": {
            k: int((lesion & (contrast >= lo) & (contrast < hi)).sum())
            for k, (lo, hi) in zip(by_bin, CONTRAST_BINS, strict=True)
        },
        "healthy_empty_rate": round(float((mc[healthy] < 0.5).all(axis=(1, 2)).mean()), 4),
        "mc_samples": mc_samples,
        "mc_seed": 0,
        "mc_seconds": round(t_mc, 1),
        "dice_eval_mode_first32": round(float(d_eval[:32].mean()), 4),  # quick to re-check
        "dice_mc_mean_first32": round(float(d_mc[:32].mean()), 4),
    }
    info["card"] = model_card(info, info["evaluation"], seed)
    meta.write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info["evaluation"], indent=1))
    return info["evaluation"]


if __name__ == "__main__":
    sys.exit(main())
