"""The bundled model's targets (issue 15), measured with the shipped weights and bundles.

    python benchmarks/bench_model_targets.py                   # CRC and COAT, N_s = bundle's
    python benchmarks/bench_model_targets.py --methods crc --json out/targets.json
    python benchmarks/bench_model_targets.py --figure docs/figures/bands_alpha0.1.png

Prints one table row per target with the measured value:

1. held-out Dice of the MC mean (threshold 0.5) on the 500 lesion test cases, overall and on
   the faintest-contrast bin (< 0.1), as written by ``scripts/train_model.py``;
2. CRC's outer threshold at alpha 0.1 (shipped bundle);
3. the demo scan (2 mm, read through the plugin's reader) at alpha 0.1: outer band volume
   against the lesion volume, and band voxels outside the head (the MNI152 brain mask the demo
   was made from, dilated by one voxel: an independent reference, not the body mask that
   bounds the bands);
4. a healthy 1 mm brain that is not the training template, the Colin27 T1 of the Debian
   package mricron-data (``/usr/share/mricron/templates/ch2bet.nii.gz``, skull-stripped; also
   ``ch2.nii.gz`` with the skull, reported only): inner band volume at alpha 0.1, and the scan
   checks' warnings;
5. the rate of healthy test cases whose CRC inner band is empty, from ``evaluation.json``.

Run in the repository root with the package importable. Needs nilearn for item 3's head mask
and mricron-data for item 4 (rows are skipped, with the reason, when they are missing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

COLIN = Path("/usr/share/mricron/templates")
ALPHA = 0.1


def analyse(volume, spacing, methods, n_samples, modality="MR"):
    from napari_consign import analysis as an

    spec = an.ModelSpec(n_samples=n_samples, device="cpu", seed=0)
    cal = an.CalibrationSpec(kind="bundled")
    gen = an.run_analysis(volume, spec, cal, methods, spacing_zyx=spacing, modality=modality)
    return an.run_to_completion(gen)


def head_mask_of_demo() -> np.ndarray | None:
    """The MNI152 brain mask on the demo grid, dilated by one voxel (None without nilearn)."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
        import make_sample_data as msd
        from scipy import ndimage as ndi

        _, brain = msd.load_anatomy()
    except ImportError:
        return None
    crop = (slice(*msd.CROP_Z), slice(*msd.CROP_Y), slice(*msd.CROP_X))
    return ndi.binary_dilation(brain[crop], ndi.generate_binary_structure(3, 3))


def save_figure(path: Path, panels, method: str) -> None:
    """One axial slice per scan: the scan in grey, the outer band orange, the inner band red
    (and the true lesion outline in cyan where known), at alpha 0.1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5))
    for ax, (title, vol, res, truth) in zip(np.atleast_1d(axes), panels, strict=True):
        inner, outer = res.bands[method].masks(ALPHA)
        if truth is not None:
            z = int(np.argmax(truth.sum(axis=(1, 2))))
        else:
            z = int(np.argmax(inner.sum(axis=(1, 2)))) if inner.any() else vol.shape[0] // 2
        ax.imshow(vol[z], cmap="gray")
        overlay = np.zeros((*vol.shape[1:], 4))
        overlay[outer[z]] = (1.0, 0.55, 0.0, 0.45)
        overlay[inner[z]] = (0.9, 0.0, 0.0, 0.8)
        ax.imshow(overlay)
        if truth is not None:
            ax.contour(truth[z], levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(f"{title}\n{method.upper()} alpha {ALPHA:g}, slice {z}", fontsize=9)
        ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="crc,coat")
    ap.add_argument("--n-samples", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument(
        "--figure", type=Path, default=None, help="PNG of a demo and a Colin27 slice with bands"
    )
    args = ap.parse_args(argv)
    import SimpleITK as sitk
    import torch

    from napari_consign._sample_data import sample_data_path
    from napari_consign.analysis import bundled_bundle_path
    from napari_consign.calibration import load_bundle
    from napari_consign.io import read_volume

    torch.set_num_threads(1)
    methods = [m for m in args.methods.split(",") if m]
    rows: list[tuple[str, str, str, str]] = []
    out: dict = {}

    meta = json.loads(sample_data_path("unet_lesions.json").read_text())
    ev = meta.get("evaluation", {})
    dice, faint = ev.get("dice_mc_mean_mean"), ev.get("dice_mc_by_contrast", {}).get("<0.1")
    rows.append(("test Dice, lesion cases", ">= 0.75", f"{dice}", "unet_lesions.json"))
    rows.append(("test Dice, faintest bin (< 0.1)", ">= 0.55", f"{faint}", "unet_lesions.json"))
    out["dice"], out["dice_faintest"] = dice, faint

    crc = load_bundle(bundled_bundle_path("crc"), model_id=meta["sha256"])
    tau = crc.outer_threshold(ALPHA)
    rows.append(("CRC outer threshold, alpha 0.1", ">= 0.05", f"{tau:.4f}", "bundles/crc.npz"))
    out["crc_outer_threshold"] = tau

    demo = read_volume(sample_data_path("demo_scan.nii.gz"))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(sample_data_path("demo_mask.nii.gz")))) > 0
    spacing = tuple(demo.geometry.spacing_zyx)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    t0 = time.perf_counter()
    res = analyse(demo.array, spacing, methods, args.n_samples)
    lesion_ml = truth.sum() * voxel_ml
    head = head_mask_of_demo()
    out["demo"] = {"lesion_ml": lesion_ml, "seconds": round(time.perf_counter() - t0, 1)}
    for name in methods:
        inner, outer = res.bands[name].masks(ALPHA)
        o_ml, i_ml = outer.sum() * voxel_ml, inner.sum() * voxel_ml
        outside_body = int((outer & ~res.view.body_source).sum())
        outside_head = None if head is None else int((outer & ~head).sum())
        tpr = float((outer & truth).sum() / truth.sum())
        rows.append(
            (
                f"demo {name.upper()}: outer / lesion volume",
                "<= 5",
                f"{o_ml / lesion_ml:.2f} ({o_ml:.1f} / {lesion_ml:.1f} mL; inner {i_ml:.1f} mL;"
                f" TPR {tpr:.2f})",
                "alpha 0.1",
            )
        )
        rows.append(
            (
                f"demo {name.upper()}: outer voxels outside the head",
                "0",
                f"{outside_head} (outside body mask: {outside_body})",
                "MNI152 brain mask, dilated 1 voxel",
            )
        )
        out["demo"][name] = {
            "outer_ml": o_ml,
            "inner_ml": i_ml,
            "tpr": tpr,
            "outer_outside_head": outside_head,
            "outer_outside_body": outside_body,
        }
    out["demo"]["warnings"] = list(res.view.report.warnings)
    panels = [("demo scan (2 mm), slice with most lesion", demo.array, res, truth)]

    for fname, label, target in (
        ("ch2bet.nii.gz", "Colin27 1 mm, skull-stripped", "<= 1 mL"),
        ("ch2.nii.gz", "Colin27 1 mm, with skull", "(reported)"),
    ):
        path = COLIN / fname
        if not path.is_file():
            rows.append((f"healthy {label}", target, "skipped", "apt-get install mricron-data"))
            continue
        vol = read_volume(path)
        sp = tuple(vol.geometry.spacing_zyx)
        res = analyse(vol.array, sp, methods, args.n_samples)
        ml = float(np.prod(sp)) / 1000.0
        entry = {"warnings": list(res.view.report.warnings), "notes": list(res.view.report.notes)}
        for name in methods:
            inner, outer = res.bands[name].masks(ALPHA)
            entry[name] = {"inner_ml": inner.sum() * ml, "outer_ml": outer.sum() * ml}
            rows.append(
                (
                    f"healthy {label}, {name.upper()} inner",
                    target,
                    f"{inner.sum() * ml:.2f} mL (outer {outer.sum() * ml:.1f} mL)",
                    "; ".join(entry["warnings"]) or "no scan warning",
                )
            )
        out[fname] = entry
        if fname == "ch2bet.nii.gz":
            panels.append(("healthy Colin27 (1 mm, skull-stripped)", vol.array, res, None))

    evaluation = json.loads((sample_data_path("bundles") / "evaluation.json").read_text())
    for name in methods:
        rate = evaluation["methods"].get(name, {}).get("healthy_inner_empty_rate")
        rows.append((f"healthy test cases with empty {name.upper()} inner band", "", f"{rate}", ""))
        out.setdefault("healthy_inner_empty_rate", {})[name] = rate

    print("| target | goal | measured | note |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if args.figure:
        save_figure(args.figure, panels, methods[0])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
