"""napari sample data: the demo scan (NIfTI and DICOM) and the shipped 2D test cases.

Files live in ``sample_data/`` (shipped inside the package as ``napari_consign/sample_data``)
and are resolved with :mod:`importlib.resources`, so they work from an installed wheel. Heavy
imports (SimpleITK) happen inside the functions. Provenance: ``sample_data/README.md``.
"""

from __future__ import annotations

from pathlib import Path

from .shipped import sample_data_path

__all__ = [
    "demo_scan",
    "demo_scan_dicom",
    "load_cases",
    "read_scan",
    "sample_data_path",
    "test_cases_2d",
]

DEMO_SCAN = "demo_scan.nii.gz"
DEMO_MASK = "demo_mask.nii.gz"
DEMO_DICOM = "demo_dicom"
CASES_2D = "cases2d.npz"


def read_scan(path: str | Path):
    """Read a scan with :func:`napari_consign.io.read_volume` (canonical LPS orientation).

    Returns ``(array (z, y, x), geometry)`` where geometry is a dict with SimpleITK ``spacing``,
    ``origin`` and ``direction`` (x, y, z order) of the loaded grid and ``source_path``.
    """
    from .io import read_volume

    volume = read_volume(path)
    geometry = {
        "spacing": tuple(volume.geometry.spacing),
        "origin": tuple(volume.geometry.origin),
        "direction": tuple(volume.geometry.direction),
        "source_path": str(path),
    }
    return volume.array, geometry


#: Layer metadata key marking a stack of independent 2D cases (axis 0 is the case index, not
#: a physical axis): the widget then reports band sizes in pixels, not mL.
CASE_STACK_KEY = "napari_consign_case_stack"


def demo_scan() -> list[tuple]:
    """Demo 3D scan (MNI152 T1 with synthetic lesions) and its ground-truth lesion mask."""
    from .io import layer_kwargs, read_volume
    from .radiological import follow_radiological_current

    follow_radiological_current()

    scan = read_volume(sample_data_path(DEMO_SCAN))
    mask = read_volume(sample_data_path(DEMO_MASK))
    image_kw = {**scan.layer_kwargs(), "name": "demo scan", "colormap": "gray"}
    mask_kw = {**layer_kwargs(mask.geometry, name="demo lesions (ground truth)"), "opacity": 0.5}
    return [(scan.array, image_kw, "image"), (mask.array.astype("uint8"), mask_kw, "labels")]


def demo_scan_dicom() -> list[tuple]:
    """The same demo scan read from its DICOM series (one file per axial slice)."""
    from .io import read_volume
    from .radiological import follow_radiological_current

    follow_radiological_current()
    scan = read_volume(sample_data_path(DEMO_DICOM))
    return [
        (
            scan.array,
            {**scan.layer_kwargs(), "name": "demo scan (DICOM)", "colormap": "gray"},
            "image",
        )
    ]


def load_cases(split: str | None = None) -> dict:
    """The shipped independent 2D cases (axial slices, 112 x 96 pixels at 2 mm).

    ``split``: "threshold" (threshold-predictor training), "calibration", "test", or None for
    all. Returns a dict with ``images`` float32 (n, H, W), ``masks`` uint8 (n, H, W), ``split``
    (names), and per-case metadata arrays (``min_abs_contrast``, ``lesion_area``, ``noise``,
    ``blur``, ``bias``, ``n_lesions``, ``z_mm``).
    """
    import numpy as np

    with np.load(sample_data_path(CASES_2D), allow_pickle=False) as z:
        names = [str(s) for s in z["split_names"]]
        codes = z["split"]
        if split is None:
            sel = np.ones(len(codes), bool)
        elif split in names:
            sel = codes == names.index(split)
        else:
            raise ValueError(f"unknown split {split!r}: use one of {', '.join(names)} or None")
        out = {
            "images": z["images"][sel].astype(np.float32) * z["scale"][sel, None, None],
            "masks": z["masks"][sel],
            "split": np.array(names)[codes[sel]],
        }
        for key in (
            "min_abs_contrast",
            "lesion_area",
            "noise",
            "blur",
            "bias",
            "n_lesions",
            "z_mm",
        ):
            out[key] = z[key][sel]
        out["spacing"] = z["spacing"]
    return out


def test_cases_2d() -> list[tuple]:
    """The first 50 shipped 2D test cases as a stack, with their ground-truth masks."""
    cases = load_cases("test")
    n = 50
    scale = tuple(float(s) for s in cases["spacing"])
    img_kw = {
        "name": "2D test cases",
        "scale": (1.0, *scale),
        "colormap": "gray",
        "metadata": {CASE_STACK_KEY: True},
    }
    mask_kw = {"name": "2D test lesions (ground truth)", "scale": (1.0, *scale), "opacity": 0.5}
    return [(cases["images"][:n], img_kw, "image"), (cases["masks"][:n], mask_kw, "labels")]
