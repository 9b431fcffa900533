"""``napari-consign predict``: a scan and calibration bundles to band files on the scan's grid.

    napari-consign predict --scan FILE --bundle crc.npz [--bundle coat.npz ...]
                           --alpha 0.1[,0.2] --out DIR [--json FILE] [--model FILE ...]

Runs the widget's per-scan analysis (:func:`napari_consign.analysis.run_analysis`): the
scan is sampled with the model (default: the bundled UNet), each bundle's method builds its
bands, and for every alpha one NIfTI label file per method is written on the scan's source
voxel grid: ``<scan>_<method>_alpha<alpha>.nii.gz`` with 0 outside, 1 outer ring (possibly
structure), 2 inner band (surely structure). Band volumes in mL are printed and written as
JSON (``--json``, default ``<out>/<scan>_bands.json``). A bundle calibrated for another model is
refused; the scan and existing files are never overwritten (``--overwrite`` replaces earlier
band files, never the scan).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import CLIError
from .options import check_device, parse_alphas


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="bands of a scan from calibration bundles, written as NIfTI labels",
        description="Sample a scan with the model, apply calibration bundles and write one "
        "NIfTI label file (0 outside, 1 ring, 2 inner) per method and alpha on the scan's grid.",
    )
    p.add_argument("--scan", required=True, type=Path, help="NIfTI file or DICOM folder")
    p.add_argument(
        "--bundle",
        required=True,
        type=Path,
        action="append",
        help="calibration bundle (.npz); repeat for several methods",
    )
    p.add_argument("--alpha", default="0.1", help="error level(s), comma-separated (0.1)")
    p.add_argument("--out", required=True, type=Path, help="folder for the band files")
    p.add_argument("--json", type=Path, help="report file (default <out>/<scan>_bands.json)")
    p.add_argument("--model", type=Path, action="append", help="model file(s); default bundled")
    p.add_argument("--mode", choices=("mc_dropout", "tta", "ensemble"), default="mc_dropout")
    p.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="N_s per slice (default: the bundle's calibration N_s, else 10)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--overwrite", action="store_true", help="replace earlier band files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import analysis as an
    from ..calibration import read_bundle_header
    from ..io import read_volume, write_nifti
    from ..io.volume import strip_suffix
    from ..parallel import progress_bar

    alphas = parse_alphas(args.alpha)
    if not args.scan.exists():
        raise CLIError(f"{args.scan}: no such file or folder")
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} is a file; give a folder")
    headers = [read_bundle_header(p) for p in args.bundle]
    names = [h["method"] for h in headers]
    if len(set(names)) < len(names):
        raise CLIError(f"two bundles hold the same method ({', '.join(names)}); give one each")
    n_samples = args.n_samples or int(headers[0].get("extra", {}).get("n_samples", 10))

    stem = strip_suffix(args.scan.name) or "scan"
    target = args.json or args.out / f"{stem}_bands.json"
    if target.exists() and not args.overwrite:
        raise CLIError(f"{target} exists; pass --overwrite or choose another --json")
    volume = read_volume(args.scan)
    device = check_device(args.device)
    spec = an.ModelSpec(tuple(args.model or ()), args.mode, n_samples, device, args.seed)
    calibration = an.CalibrationSpec(kind="files", files=tuple(args.bundle))
    with progress_bar(1, "predict", args.quiet) as bar:

        def show(event) -> None:
            if isinstance(event, an.ScanChecked):
                print_scan_check(event, args.quiet)
            if isinstance(event, an.Progress) and event.total:
                bar.total = event.total
                bar.n = event.done
                bar.set_description(event.text or event.stage)
                bar.refresh()

        gen = an.run_analysis(
            volume.array,
            spec,
            calibration,
            names,
            spacing_zyx=tuple(volume.geometry.spacing_zyx),
            modality=volume.modality or None,
        )
        result = an.run_to_completion(gen, show)
    if result.errors:
        name, message = next(iter(result.errors.items()))
        raise CLIError(f"{name}: {message}")

    args.out.mkdir(parents=True, exist_ok=True)
    state = an.ImageAnalysis(
        shape=tuple(volume.array.shape),
        spacing_zyx=tuple(volume.geometry.spacing_zyx),
        bands=result.bands,
    )
    report = {
        "scan": str(args.scan),
        "model_id": result.model_id,
        "n_samples": n_samples,
        "bands": [],
    }
    for name in names:
        for alpha in alphas:
            path = args.out / f"{stem}_{name}_alpha{alpha:g}.nii.gz"
            labels = result.bands[name].labels(alpha)
            write_nifti(path, labels, volume.geometry, overwrite=args.overwrite)
            numbers = state.numbers(name, alpha)
            numbers["alpha_used"] = numbers.pop("alpha")  # the bands' grid level
            report["bands"].append({"method": name, "alpha": alpha, "file": str(path), **numbers})
    print(_table(report["bands"]))
    target.write_text(json.dumps(report, indent=2))
    if not args.quiet:
        print(f"band files in {args.out}, report {target}", file=sys.stderr)
    return 0


def print_scan_check(event, quiet: bool) -> None:
    """The scan checks on stderr: every warning (always) and the notes (unless quiet)."""
    for line in event.report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if not quiet:
        for line in event.report.notes:
            print(f"note: {line}", file=sys.stderr)
    if event.report.warnings:
        print(event.caveat, file=sys.stderr)


def _table(rows: list[dict]) -> str:
    lines = [f"{'method':<10}{'alpha':>8}{'grid alpha':>12}{'inner mL':>12}{'outer mL':>12}"]
    for r in rows:
        lines.append(
            f"{r['method']:<10}{r['alpha']:>8g}{r['alpha_used']:>12.4g}"
            f"{r.get('inner_ml', float('nan')):>12.3f}{r.get('outer_ml', float('nan')):>12.3f}"
        )
    return "\n".join(lines)
