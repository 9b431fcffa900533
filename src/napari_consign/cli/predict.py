"""``napari-consign predict``: a scan and calibration bundles to band files on the scan's grid.

    napari-consign predict --scan FILE --bundle crc.npz [--bundle coat.npz ...]
                           --alpha 0.1[,0.2] --out DIR [--json FILE] [--model FILE ...]

Runs the widget's per-scan analysis (:func:`napari_consign.analysis.run_analysis`): the
scan is sampled with the model (default: the bundled UNet), each bundle's method builds its
bands, and for every alpha one NIfTI label file per method is written on the scan's source
voxel grid: ``<scan>_<method>_alpha<alpha>.nii.gz`` with 0 outside, 1 outer ring (possibly
structure), 2 inner band (surely structure). Band volumes in mL are printed and written as
JSON (``--json``, default ``<out>/<scan>_bands.json``). A bundle calibrated for another model,
its settings (sidecar), another sampling mode or another N_s is refused. Each alpha is served at
the largest calibrated level not above it (a stronger guarantee, said in the output); an alpha
below every calibrated level is refused unless ``--allow-weaker``; file names carry the level
served. Inputs, scans and bundles are never overwritten (``--overwrite`` replaces only earlier
band files and reports of this program); every file is written atomically and verified.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .errors import CLIError, model_failures
from .options import check_device, nonnegative_int, parse_alphas, positive_int


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
        type=positive_int,
        default=None,
        help="N_s per slice (default: the bundle's calibration N_s, else 10)",
    )
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace this program's earlier band files and report (never a scan, bundle or "
        "other input)",
    )
    p.add_argument(
        "--allow-weaker",
        action="store_true",
        help="serve an alpha below the bundle's smallest calibrated level at that level (a "
        "weaker guarantee than asked; the report and output say so); default: refuse",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import analysis as an
    from ..calibration import bundle_levels, check_sampling, read_bundle_header, serve_alpha
    from ..cases import check_finite
    from ..io import read_volume
    from ..io.safe_write import REPORT_KEY, check_target, write_text
    from ..io.volume import strip_suffix
    from ..models.loading import model_settings_id
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
    recorded = {int(h.get("extra", {}).get("n_samples", 10)) for h in headers}
    if args.n_samples is None and len(recorded) > 1:
        raise CLIError(
            f"the bundles were calibrated at different N_s ({', '.join(map(str, recorded))}); "
            "give bundles made with one N_s"
        )
    n_samples = args.n_samples or recorded.pop()
    mode = "ensemble" if len(args.model or ()) > 1 else args.mode
    settings = model_settings_id(args.model or ())
    notes = [  # said after a successful run, and in the report
        note
        for h, path in zip(headers, args.bundle, strict=True)
        for note in check_sampling(h, path, mode=mode, n_samples=n_samples, settings=settings)
    ]

    stem = strip_suffix(args.scan.name) or "scan"
    inputs = _inputs(args)
    planned = {  # fail before sampling: alphas the bundles cannot serve, targets refused
        (name, alpha): serve_alpha(bundle_levels(h), alpha, args.allow_weaker, path, h)
        for h, name, path in zip(headers, names, args.bundle, strict=True)
        for alpha in alphas
    }
    target = args.json or args.out / f"{stem}_bands.json"
    args.out.mkdir(parents=True, exist_ok=True)
    check_target(target, "report", inputs=inputs, overwrite=args.overwrite)
    for (name, _), (served, _) in planned.items():
        check_target(_band_path(args.out, stem, name, served), "bands", inputs=inputs,
                     overwrite=args.overwrite)  # fmt: skip
    volume = read_volume(args.scan)
    check_finite(volume.array, str(args.scan))
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

        try:
            gen = an.run_analysis(
                volume.array,
                spec,
                calibration,
                names,
                spacing_zyx=tuple(volume.geometry.spacing_zyx),
                modality=volume.modality or None,
            )
            result = an.run_to_completion(gen, show)
        except model_failures() as exc:  # a user model failing on the real slices
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise CLIError(
                f"the model failed on {args.scan} ({type(exc).__name__}: {first})"
            ) from None
    if result.errors:
        name, message = next(iter(result.errors.items()))
        raise CLIError(f"{name}: {message}")
    bad = int(np.count_nonzero(~np.isfinite(result.mean)))
    if bad:
        raise CLIError(
            f"the model returned NaN or infinite probabilities at {bad} voxel(s) of {args.scan}; "
            "no bands were written"
        )

    state = an.ImageAnalysis(
        shape=tuple(volume.array.shape),
        spacing_zyx=tuple(volume.geometry.spacing_zyx),
        bands=result.bands,
    )
    report = {
        REPORT_KEY: "napari-consign predict",
        "scan": str(args.scan),
        "model_id": result.model_id,
        "n_samples": n_samples,
        "notes": notes,
        "bands": [],
    }
    served_files, planned_paths = [], set()
    for name in names:
        levels = result.bands[name].alphas
        for alpha in alphas:
            served, note = serve_alpha(levels, alpha, args.allow_weaker, name)
            path = _band_path(args.out, stem, name, served)
            if path not in planned_paths:
                check_target(path, "bands", inputs=inputs, overwrite=args.overwrite)
            served_files.append((name, alpha, served, note, path, path not in planned_paths))
            planned_paths.add(path)
    for name, alpha, served, note, path, first in served_files:
        labels = result.bands[name].labels(served)
        if first:  # two alphas served at one level share one file
            write_nifti(path, labels, volume.geometry, overwrite=args.overwrite, kind="bands",
                        inputs=inputs)  # fmt: skip
        numbers = state.numbers(name, served)
        numbers["alpha_used"] = numbers.pop("alpha")  # the bands' grid level
        row = {"method": name, "alpha": alpha, "file": str(path), **numbers}
        if note:
            row["note"] = note
            notes.append(f"{name}: {note}")
        report["bands"].append(row)
    print(_table(report["bands"]))
    write_text(target, json.dumps(report, indent=2), replace=args.overwrite)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not args.quiet:
        print(f"band files in {args.out}, report {target}", file=sys.stderr)
    return 0


def write_nifti(*args, **kwargs):
    """:func:`napari_consign.io.write_nifti` (imported when a band file is written)."""
    from ..io import write_nifti as _write

    return _write(*args, **kwargs)


def _band_path(out: Path, stem: str, name: str, served: float) -> Path:
    """The band file of ``name`` at the grid level ``served``: the name carries that level."""
    return out / f"{stem}_{name}_alpha{served:g}.nii.gz"


def _inputs(args: argparse.Namespace) -> list[Path]:
    """Every file this run reads (never an output): scan, bundles, models and sidecars."""
    models = list(args.model or ())
    return [args.scan, *args.bundle, *models, *(m.with_suffix(".json") for m in models)]


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
