"""``napari-consign sample``: Monte-Carlo samples of a scan, written in the NPZ contract.

    napari-consign sample --scan FILE --n-samples 20 --out FILE.npz [--mask FILE]
                          [--model FILE ...] [--mode mc_dropout|tta|ensemble]
                          [--device auto] [--seed 0]

Writes ``samples`` (n, N_s, H, W) foreground probabilities (float16 by default, ``--dtype
float32`` for full precision), ``images`` (n, H, W) float32, and ``masks`` (n, H, W) uint8 when
``--mask`` is given; n is the number of axial slices. Extra keys: ``spacing``, ``origin``,
``direction`` (SimpleITK x, y, z order), ``model_identity`` and ``seed``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import CLIError, model_failures
from .options import nonnegative_int, positive_int


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample",
        help="draw Monte-Carlo samples of a scan with a segmentation model (NPZ output)",
        description="Draw N_s foreground-probability maps per axial slice of a scan with the "
        "bundled MC-dropout UNet or a user model, and write them as an NPZ (samples, images, "
        "masks).",
    )
    p.add_argument("--scan", required=True, type=Path, help="NIfTI file or DICOM folder")
    p.add_argument("--out", required=True, type=Path, help="output .npz file")
    p.add_argument(
        "--n-samples",
        type=positive_int,
        default=None,
        help="N_s per slice (default 20 for MC dropout, 4 flips for tta, one per "
        "member for an ensemble)",
    )
    p.add_argument("--mask", type=Path, help="ground-truth mask on the scan's grid (NIfTI)")
    p.add_argument(
        "--model",
        type=Path,
        action="append",
        help="TorchScript file or state dict of the built-in UNet (default: the bundled "
        "model); repeat with --mode ensemble",
    )
    p.add_argument(
        "--mode",
        choices=("mc_dropout", "tta", "ensemble"),
        default=None,
        help="sampling mode (default mc_dropout; ensemble when several --model)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--chunk-size", type=positive_int, default=None, help="samples per forward pass")
    p.add_argument("--half", action="store_true", help="float16 autocast on CUDA")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    p.add_argument(
        "--dtype",
        choices=("float16", "float32"),
        default="float16",
        help="dtype of the stored samples (default float16)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a sample file this program wrote earlier (never an input, scan or bundle)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(run=run)


def read_volume(path: Path):
    """Scan array (z, y, x) and its geometry dict, read through :mod:`napari_consign.io`."""
    from .._sample_data import read_scan
    from ..io import ConsignIOError

    if not path.exists():
        raise CLIError(f"{path}: no such file or folder")
    try:
        return read_scan(path)
    except ConsignIOError as exc:  # already says what is wrong and what to do
        raise CLIError(str(exc)) from None
    except (RuntimeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()
        reason = next((ln for ln in first if ln.strip()), type(exc).__name__)
        raise CLIError(f"{path}: cannot read as NIfTI or DICOM ({reason.strip()[:200]})") from None


def _check_volume(arr, path: Path):
    import numpy as np

    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise CLIError(
            f"{path}: {arr.ndim}D image of shape {arr.shape}; the sampler needs a 2D or 3D "
            "scalar scan (extract one volume of a 4D series first)"
        )
    if not np.issubdtype(arr.dtype, np.number):
        raise CLIError(f"{path}: pixel type {arr.dtype} is not a scalar number")
    return arr


def _print_scan_check(vol, geo: dict, sampler, quiet: bool) -> None:
    """The model card's scan checks on stderr. ``sample`` keeps the scan's grid (the NPZ holds
    its geometry), so a spacing other than the card's is only reported."""
    from ..models.card import card_of
    from ..ood import check_scan, guarantee_caveat

    card = card_of(sampler)
    spacing = tuple(float(s) for s in geo["spacing"])[::-1]  # SimpleITK (x, y, z) -> (z, y, x)
    report = check_scan(vol, card, spacing_zyx=spacing if len(spacing) == 3 else None)
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    if card is not None and len(spacing) == 3 and not quiet:
        if any(abs(a / b - 1) > 1e-3 for a, b in zip(spacing, card.spacing_zyx, strict=True)):
            want = " x ".join(f"{v:g}" for v in card.spacing_zyx)
            print(
                f"note: the model expects {want} mm voxels; `sample` keeps the scan's grid "
                "(`predict` and the widget resample)",
                file=sys.stderr,
            )
    if report.warnings:
        print(guarantee_caveat(report), file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..cases import CasesError, check_finite, check_mask_values, check_same_grid
    from ..io.safe_write import check_target, write_npz
    from ..models.loading import model_settings_id

    out = Path(args.out)
    model_paths = [Path(p) for p in (args.model or [])]
    inputs = [Path(args.scan), *model_paths, *(p.with_suffix(".json") for p in model_paths)]
    if args.mask is not None:
        inputs.append(Path(args.mask))
    if not out.parent.exists():
        raise CLIError(f"--out {out}: folder {out.parent} does not exist")
    check_target(out, "samples", inputs=inputs, overwrite=args.overwrite)
    if out.suffix != ".npz":
        raise CLIError(f"--out {out}: the output file must end in .npz")

    vol, geo = read_volume(Path(args.scan))
    vol = _check_volume(vol, Path(args.scan))
    check_finite(vol, str(args.scan))
    masks = None
    if args.mask is not None:
        m, mgeo = read_volume(Path(args.mask))
        m = _check_volume(m, Path(args.mask))
        try:
            check_same_grid((vol.shape, geo), (m.shape, mgeo), f"--mask {args.mask}", "the scan's")
            check_mask_values(m, f"--mask {args.mask}")
        except CasesError as exc:
            raise CLIError(str(exc)) from None
        masks = (m != 0).astype(np.uint8)

    from ..conformal.device import DeviceError, resolve_device
    from ..models.loading import ModelLoadError, load_builtin_model, load_model
    from ..models.reductions import KeepSamples
    from ..models.sampler import Sampler

    try:
        device = resolve_device(args.device)
        paths = args.model or []
        models = [load_model(p, device=device) for p in paths] or [load_builtin_model(device)]
        mode = args.mode or ("ensemble" if len(models) > 1 else "mc_dropout")
        n_samples = args.n_samples
        if n_samples is None and mode == "mc_dropout":
            n_samples = 20
        sampler = Sampler(
            models if mode == "ensemble" else models[0],
            mode=mode,
            n_samples=n_samples,
            device=device,
            chunk_size=args.chunk_size,
            half=args.half,
            seed=args.seed,
            num_threads=args.threads,
        )
    except (DeviceError, ModelLoadError, ValueError) as exc:
        raise CLIError(str(exc)) from None

    _print_scan_check(vol, geo, sampler, args.quiet)
    keep = KeepSamples(dtype=np.dtype(args.dtype))
    t0 = time.perf_counter()

    def report(step):
        if not args.quiet:
            print(f"\rslice {step.done}/{step.total}", end="", file=sys.stderr, flush=True)

    try:
        result = sampler.run(vol, [keep], progress=report)
    except model_failures() as exc:  # a user model failing on the real slices
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CLIError(f"the model failed on {args.scan} ({type(exc).__name__}: {first})") from None
    bad = int(np.count_nonzero(~np.isfinite(result["samples"])))
    if bad:
        raise CLIError(
            f"the model returned NaN or infinite probabilities at {bad} value(s) of "
            f"{args.scan}; nothing was written"
        )
    if not args.quiet:
        print(
            f"\r{vol.shape[0]} slices x {sampler.n_samples} samples on {sampler.device} in "
            f"{time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
        )
    arrays = {
        "samples": result["samples"],
        "images": vol.astype(np.float32),
        "spacing": np.asarray(geo["spacing"], np.float64),
        "origin": np.asarray(geo["origin"], np.float64),
        "direction": np.asarray(geo["direction"], np.float64),
        "model_identity": np.array(sampler.identity),
        "model_settings": np.array(model_settings_id(model_paths)),
        "mode": np.array(mode),
        "seed": np.array(args.seed),
    }
    if masks is not None:
        arrays["masks"] = masks
    write_npz(out, arrays, replace=args.overwrite)
    if not args.quiet:
        print(f"wrote {out} (samples {arrays['samples'].shape} {args.dtype})", file=sys.stderr)
    return 0
