"""Build napari-consign's sample data, deterministically from a seed.

Background anatomy is the MNI ICBM152 2009a T1 template that ships inside the nilearn wheel
(``nilearn.datasets.load_mni152_template(resolution=2)``, loaded offline), reoriented to LPS
(identity direction) and cropped to the brain. Synthetic lesions with exact ground truth are
added: they vary in number, size, shape (rotated ellipses/ellipsoids with a rough boundary),
contrast (faint to strong, hyper- and hypo-intense), edge blur, acquisition blur, bias field and
Rician noise.

Outputs (in ``--out``, default ``sample_data/``):

- ``demo_scan.nii.gz``: a 3D scan (80 x 112 x 96 voxels, 2 mm, int16) with 3D lesions;
- ``demo_mask.nii.gz``: its ground-truth lesion mask (uint8, 0/1), same grid;
- ``demo_dicom/``: the same scan as a DICOM series (one file per axial slice);
- ``cases2d.npz``: independent 2D cases (axial slices of independently augmented anatomy with
  independently drawn lesions) for threshold-predictor training, calibration and testing.

Model-training cases are not shipped: ``training_cases(n, seed)`` regenerates them (the training
script imports it). Every case draws from its own ``SeedSequence((seed, split, index))``, so the
splits are independent and any case can be rebuilt alone.

Needs nilearn (rebuild only; not a run-time dependency of the plugin).

    python scripts/make_sample_data.py            # writes sample_data/
    python scripts/make_sample_data.py --check    # rebuilds in a temp dir and compares
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

SEED = 20261123
SLICE_SHAPE = (112, 96)  # (y, x) of every 2D case and of every axial slice of the demo scan
SPACING_MM = 2.0
# crop of the LPS-reoriented 2 mm template (z, y, x): brain bounding box plus a margin
CROP_Z = (0, 80)
CROP_Y = (2, 114)
CROP_X = (1, 97)
SPLITS = {"threshold": 300, "calibration": 600, "test": 600}
#: the last cases of these splits are healthy (no lesion): they calibrate and test the inner
#: band's guarantee on scans without structure; the first 500 of each are unchanged
HEALTHY = {"calibration": 100, "test": 100}
SPLIT_CODES = {"train": 0, "threshold": 1, "calibration": 2, "test": 3, "demo": 9}
DEMO_SERIES_UID = "1.2.826.0.1.3680043.8.498.20261123.1"
DEMO_STUDY_UID = "1.2.826.0.1.3680043.8.498.20261123.2"
DEMO_FOR_UID = "1.2.826.0.1.3680043.8.498.20261123.3"


# --------------------------------------------------------------------------- anatomy
_ANATOMY: tuple[np.ndarray, np.ndarray] | None = None


def load_anatomy() -> tuple[np.ndarray, np.ndarray]:
    """MNI152 T1 (2 mm) as a float32 array (z, y, x) in LPS order, values in [0, 1], and its
    brain mask. Full template grid (95, 117, 99); LPS origin (-98, -98, -72) mm."""
    global _ANATOMY
    if _ANATOMY is None:
        from nilearn.datasets import load_mni152_brain_mask, load_mni152_template

        t1 = np.asarray(load_mni152_template(resolution=2).get_fdata(), dtype=np.float32)
        brain = np.asarray(load_mni152_brain_mask(resolution=2).get_fdata()) > 0.5
        # nibabel RAS (x, y, z) -> LPS array (z, y, x): reverse x and y
        t1 = np.ascontiguousarray(t1.transpose(2, 1, 0)[:, ::-1, ::-1])
        brain = np.ascontiguousarray(brain.transpose(2, 1, 0)[:, ::-1, ::-1])
        t1 = np.clip(t1 / t1.max(), 0.0, 1.0)
        _ANATOMY = (t1, brain)
    return _ANATOMY


TEMPLATE_ORIGIN_LPS = (-98.0, -98.0, -72.0)  # x, y, z of voxel (0, 0, 0) of the LPS array


# --------------------------------------------------------------------------- pieces
def _unit_noise(shape, sigma, rng) -> np.ndarray:
    f = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return f / (f.std() + 1e-12)


def _rotation(ndim: int, rng) -> np.ndarray:
    if ndim == 2:
        a = rng.uniform(0, np.pi)
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    return q * np.sign(np.diag(r))


def bias_field(shape, amplitude: float, rng) -> np.ndarray:
    """Smooth multiplicative field exp(amplitude * f), f a unit-std low-frequency field."""
    small = tuple(max(3, s // 16) for s in shape)
    f = _unit_noise(small, 1.0, rng)
    f = ndi.zoom(f, [s / m for s, m in zip(shape, small, strict=True)], order=3, mode="nearest")
    f = f[tuple(slice(0, s) for s in shape)]
    return np.exp(amplitude * f / (f.std() + 1e-12)).astype(np.float32)


def lesion_mask(shape, center, radii, roughness: float, rng) -> np.ndarray:
    """Boolean mask of a rotated ellipse/ellipsoid whose boundary is roughened by smooth noise."""
    ndim = len(shape)
    half = int(np.ceil(max(radii) * (1.0 + 2 * roughness))) + 2
    lo = [max(0, int(np.rint(c)) - half) for c in center]
    hi = [min(s, int(np.rint(c)) + half + 1) for c, s in zip(center, shape, strict=True)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    grids = np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi, strict=True)], indexing="ij")
    d = np.stack([g - c for g, c in zip(grids, center, strict=True)], axis=-1)
    d = d @ _rotation(ndim, rng)
    r = np.sqrt(sum((d[..., k] / radii[k]) ** 2 for k in range(ndim)))
    noise = _unit_noise(r.shape, max(1.0, 0.5 * min(radii)), rng) if r.size > 1 else 0.0
    out = np.zeros(shape, bool)
    out[box] = (r + roughness * noise) < 1.0
    return out


def _draw_lesion_params(rng, ndim: int) -> dict:
    mag = float(np.exp(rng.uniform(np.log(0.06), np.log(0.5))))  # faint ... strong
    sign = 1.0 if rng.random() < 0.7 else -1.0
    radius = float(np.exp(rng.uniform(np.log(2.0), np.log(10.0))))  # voxels (2 mm): 4-20 mm
    aspect = rng.uniform(0.5, 1.0, size=ndim)
    aspect[rng.integers(ndim)] = 1.0
    return {
        "contrast": sign * mag,
        "radii": (radius * aspect).tolist(),
        "roughness": float(rng.uniform(0.0, 0.35)),
        "edge": float(rng.uniform(0.3, 0.8)),  # partial-volume edge blur (voxels)
        "texture": float(rng.uniform(0.0, 0.06)),
    }


def insert_lesion(image, truth, brain, params, rng, center=None) -> bool:
    """Add one lesion in place; returns False if it could not be placed."""
    core = ndi.binary_erosion(brain, iterations=2)
    candidates = np.argwhere(core & ~truth)
    if len(candidates) == 0:
        return False
    for _ in range(20):
        c = center if center is not None else candidates[rng.integers(len(candidates))]
        m = lesion_mask(image.shape, c, params["radii"], params["roughness"], rng) & brain
        if m.sum() >= (4 if image.ndim == 2 else 8):
            break
        if center is not None:
            return False
    else:
        return False
    w = ndi.gaussian_filter(m.astype(np.float32), params["edge"])
    tex = 1.0 + params["texture"] * _unit_noise(image.shape, 1.0, rng).astype(np.float32)
    image += w * params["contrast"] * tex
    np.clip(image, 0.0, None, out=image)
    truth |= m
    return True


def acquire(image, rng, ndim: int) -> tuple[np.ndarray, dict]:
    """Blur, bias field and Rician noise (the 'scanner')."""
    return _scanner(image, rng, (0.0, 0.8), (0.05, 0.3), (0.01, 0.04))


def _scanner(image, rng, blur_range, bias_range, noise_range) -> tuple[np.ndarray, dict]:
    """Blur (sigma uniform in ``blur_range``), bias field (amplitude uniform in ``bias_range``)
    and Rician noise (sigma log-uniform in ``noise_range``), drawn in this order."""
    blur = float(rng.uniform(*blur_range))
    bias = float(rng.uniform(*bias_range))
    noise = float(np.exp(rng.uniform(np.log(noise_range[0]), np.log(noise_range[1]))))
    out = ndi.gaussian_filter(image, blur) if blur > 0.05 else image.copy()
    out = out * bias_field(image.shape, bias, rng)
    n1 = rng.standard_normal(image.shape).astype(np.float32)
    n2 = rng.standard_normal(image.shape).astype(np.float32)
    out = np.sqrt((out + noise * n1) ** 2 + (noise * n2) ** 2)
    return out.astype(np.float32), {"blur": blur, "bias": bias, "noise": noise}


# --------------------------------------------------------------------------- 2D cases
def _anatomy_slice(rng) -> tuple[np.ndarray, np.ndarray, float]:
    t1, brain = load_anatomy()
    area = brain.sum(axis=(1, 2))
    zs = np.flatnonzero(area >= 0.25 * area.max())
    z = float(rng.uniform(zs[0], zs[-1]))
    z0 = int(np.floor(z))
    f = z - z0
    z1 = min(z0 + 1, t1.shape[0] - 1)
    img = (1 - f) * t1[z0] + f * t1[z1]
    msk = ((1 - f) * brain[z0] + f * brain[z1]).astype(np.float32)
    # random similarity transform about the crop centre, output on the 112 x 96 crop grid
    ang = np.deg2rad(rng.uniform(-12, 12))
    scale = rng.uniform(0.9, 1.1)
    flip = -1.0 if rng.random() < 0.5 else 1.0
    rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]) / scale
    rot = rot @ np.diag([1.0, flip])
    out_c = (np.array(SLICE_SHAPE) - 1) / 2.0
    in_c = np.array([(CROP_Y[0] + CROP_Y[1] - 1) / 2.0, (CROP_X[0] + CROP_X[1] - 1) / 2.0])
    shift = rng.uniform(-4, 4, size=2)
    offset = in_c + shift - rot @ out_c
    img = ndi.affine_transform(img, rot, offset, output_shape=SLICE_SHAPE, order=1)
    msk = ndi.affine_transform(msk, rot, offset, output_shape=SLICE_SHAPE, order=1) > 0.5
    gamma = rng.uniform(0.8, 1.25)
    img = np.clip(img, 0, 1) ** gamma
    return img.astype(np.float32), msk, (z * SPACING_MM + TEMPLATE_ORIGIN_LPS[2])


def _vary_anatomy(img: np.ndarray, brain: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    """Training-only anatomy and contrast variation on top of ``_anatomy_slice``: a smooth
    elastic warp (up to 4 px), an anisotropic stretch (0.85-1.15 per axis) and a random
    monotone tissue-contrast curve (so grey/white/CSF ratios differ from the template's)."""
    amp = rng.uniform(0.0, 4.0)
    grid = np.mgrid[0 : SLICE_SHAPE[0], 0 : SLICE_SHAPE[1]].astype(np.float32)
    centre = (np.array(SLICE_SHAPE, np.float32) - 1) / 2.0
    stretch = rng.uniform(0.85, 1.15, size=2).astype(np.float32)
    coords = np.stack(
        [
            centre[k] + (grid[k] - centre[k]) / stretch[k] + amp * _unit_noise(SLICE_SHAPE, 10, rng)
            for k in range(2)
        ]
    )
    img = ndi.map_coordinates(img, coords, order=1, mode="constant").astype(np.float32)
    brain = ndi.map_coordinates(brain.astype(np.float32), coords, order=1, mode="constant") > 0.5
    knots = np.linspace(0.0, 1.0, 5)
    steps = rng.uniform(0.5, 1.5, size=4)
    curve = np.concatenate([[0.0], np.cumsum(steps) / steps.sum()])
    img = np.interp(np.clip(img, 0.0, 1.0), knots, curve).astype(np.float32)
    return img, brain


def _draw_train_lesion_params(rng) -> dict:
    """Training lesions: as the held-out ones, but half of them faint (contrast 0.05-0.15)."""
    p = _draw_lesion_params(rng, 2)
    if rng.random() < 0.5:
        sign = np.sign(p["contrast"])
        p["contrast"] = float(sign * np.exp(rng.uniform(np.log(0.05), np.log(0.15))))
    return p


def acquire_varied(image, rng) -> tuple[np.ndarray, dict]:
    """Training-only 'scanner': wider blur, bias field and noise than ``acquire``, and with
    probability 0.4 a lower in-plane resolution (down by 1.3-2.5, back up linearly), as a scan
    resampled from another grid looks."""
    if rng.random() < 0.4:
        f = float(rng.uniform(1.3, 2.5))
        small = ndi.zoom(ndi.gaussian_filter(image, 0.4 * f), 1.0 / f, order=1)
        up = ndi.zoom(
            small, [s / m for s, m in zip(image.shape, small.shape, strict=True)], order=1
        )
        image = up[: image.shape[0], : image.shape[1]].astype(np.float32)
    return _scanner(image, rng, (0.0, 1.0), (0.05, 0.45), (0.006, 0.05))


def make_case_2d(seed: int, split: str, index: int, varied: bool = False) -> dict:
    """One independent 2D case: uint8 image, its float scale, uint8 mask and metadata.

    Calibration and test cases with ``index >= SPLITS[split] - HEALTHY[split]`` are healthy
    (no lesion); the others have 1-3 lesions. Training cases (split "train") have 0-3 lesions
    (healthy with probability 0.1); with ``varied`` they add anatomy, contrast, resolution and
    scanner variation, half of their lesions are faint and a quarter of them are healthy (the
    variant tried for issue 15; see sample_data/README.md for what it measured).
    """
    rng = np.random.default_rng(np.random.SeedSequence((seed, SPLIT_CODES[split], index)))
    img, brain, z_mm = _anatomy_slice(rng)
    truth = np.zeros(SLICE_SHAPE, bool)
    train = split == "train"
    varied = varied and train
    healthy = index >= SPLITS.get(split, 0) - HEALTHY.get(split, 0) and split in HEALTHY
    if varied:
        img, brain = _vary_anatomy(img, brain, rng)
        n_les = int(rng.choice([0, 1, 2, 3], p=[0.25, 0.35, 0.25, 0.15]))
    elif train:
        n_les = int(rng.choice([0, 1, 2, 3], p=[0.1, 0.4, 0.3, 0.2]))
    else:
        n_les = 0 if healthy else int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    contrasts = []
    for _ in range(n_les):
        p = _draw_train_lesion_params(rng) if varied else _draw_lesion_params(rng, 2)
        if insert_lesion(img, truth, brain, p, rng):
            contrasts.append(p["contrast"])
    if not train and not healthy and not truth.any():  # a lesion case has a lesion
        p = _draw_lesion_params(rng, 2)
        p["radii"] = [4.0, 4.0]
        insert_lesion(img, truth, brain, p, rng)
        contrasts.append(p["contrast"])
    out, acq = acquire_varied(img, rng) if varied else acquire(img, rng, 2)
    scale = float(out.max()) / 255.0
    u8 = np.clip(np.rint(out / scale), 0, 255).astype(np.uint8)
    return {
        "image": u8,
        "scale": scale,
        "mask": truth.astype(np.uint8),
        "n_lesions": len(contrasts),
        "min_abs_contrast": float(min((abs(c) for c in contrasts), default=0.0)),
        "lesion_area": int(truth.sum()),
        "z_mm": float(z_mm),
        **acq,
    }


def training_cases(n: int, seed: int = SEED, varied: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Regenerate the model-training cases: float32 images (n, 112, 96), uint8 masks."""
    imgs = np.empty((n, *SLICE_SHAPE), np.float32)
    msks = np.empty((n, *SLICE_SHAPE), np.uint8)
    for i in range(n):
        c = make_case_2d(seed, "train", i, varied)
        imgs[i] = c["image"].astype(np.float32) * c["scale"]
        msks[i] = c["mask"]
    return imgs, msks


def make_cases(seed: int) -> dict[str, np.ndarray]:
    cases = [
        (code, make_case_2d(seed, name, i))
        for name, n in SPLITS.items()
        for code, i in ((list(SPLITS).index(name), i) for i in range(n))
    ]
    out = {
        "images": np.stack([c["image"] for _, c in cases]),
        "scale": np.array([c["scale"] for _, c in cases], np.float32),
        "masks": np.stack([c["mask"] for _, c in cases]),
        "split": np.array([code for code, _ in cases], np.uint8),
        "split_names": np.array(list(SPLITS)),
    }
    for key in ("n_lesions", "lesion_area"):
        out[key] = np.array([c[key] for _, c in cases], np.int32)
    for key in ("min_abs_contrast", "z_mm", "blur", "bias", "noise"):
        out[key] = np.array([c[key] for _, c in cases], np.float32)
    out["spacing"] = np.array([SPACING_MM, SPACING_MM], np.float32)
    out["seed"] = np.array(seed, np.int64)
    return out


# --------------------------------------------------------------------------- 3D demo
DEMO_LESIONS = [  # contrast, radius (voxels), rough: a spread from obvious to hard
    (0.40, 6.0, 0.25),
    (0.30, 3.0, 0.10),
    (0.20, 4.5, 0.30),
    (0.12, 3.5, 0.15),
    (0.08, 5.0, 0.20),
    (0.06, 3.0, 0.10),
    (-0.28, 4.0, 0.20),
    (-0.10, 3.0, 0.15),
    (0.35, 2.0, 0.05),
]


def make_demo(seed: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    rng = np.random.default_rng(np.random.SeedSequence((seed, SPLIT_CODES["demo"], 0)))
    t1, brain = load_anatomy()
    crop = (slice(*CROP_Z), slice(*CROP_Y), slice(*CROP_X))
    img = t1[crop].copy()
    br = brain[crop]
    truth = np.zeros(img.shape, bool)
    zlo, zhi = 18, 70  # lesions in the slices with most brain
    records = []
    for contrast, radius, rough in DEMO_LESIONS:
        p = _draw_lesion_params(rng, 3)
        aspect = np.asarray(p["radii"]) / max(p["radii"])
        p.update(contrast=contrast, radii=(radius * aspect).tolist(), roughness=rough)
        band = br.copy()
        band[:zlo] = False
        band[zhi:] = False
        core = ndi.binary_erosion(band, iterations=int(radius) + 2) & ~ndi.binary_dilation(
            truth, iterations=int(radius) + 3
        )
        cand = np.argwhere(core)
        c = cand[rng.integers(len(cand))]
        if insert_lesion(img, truth, br, p, rng, center=c):
            records.append({"center_zyx": c.tolist(), **p})
    out, acq = acquire(img, rng, 3)
    vol = np.clip(np.rint(out * 1000.0), 0, 32767).astype(np.int16)
    return vol, truth.astype(np.uint8), [{"acquisition": acq}, *records]


def demo_geometry() -> tuple[tuple, tuple, tuple]:
    origin = (
        TEMPLATE_ORIGIN_LPS[0] + SPACING_MM * CROP_X[0],
        TEMPLATE_ORIGIN_LPS[1] + SPACING_MM * CROP_Y[0],
        TEMPLATE_ORIGIN_LPS[2] + SPACING_MM * CROP_Z[0],
    )
    return (SPACING_MM,) * 3, origin, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)


def _sitk_image(arr: np.ndarray):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    spacing, origin, direction = demo_geometry()
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def write_dicom_series(vol: np.ndarray, folder: Path) -> None:
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    img = _sitk_image(vol)
    direction = img.GetDirection()
    iop = "\\".join(f"{v:g}" for v in (*direction[0:7:3], *direction[1:8:3]))
    common = [
        ("0008|0060", "MR"),
        ("0008|0008", "DERIVED\\SECONDARY"),
        ("0008|0020", "20261123"),
        ("0008|0030", "120000"),
        ("0008|103e", "napari-consign demo: MNI152 T1 with synthetic lesions"),
        ("0010|0010", "Phantom^Demo"),
        ("0010|0020", "NAPARI-CONSIGN-DEMO"),
        ("0020|000d", DEMO_STUDY_UID),
        ("0020|000e", DEMO_SERIES_UID),
        ("0020|0052", DEMO_FOR_UID),
        ("0020|0011", "1"),
        ("0020|0037", iop),
        ("0018|0050", f"{SPACING_MM:g}"),
        ("0018|0088", f"{SPACING_MM:g}"),
    ]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(img.GetDepth()):
        sl = img[:, :, k]
        for tag, value in common:
            sl.SetMetaData(tag, value)
        pos = img.TransformIndexToPhysicalPoint((0, 0, k))
        sl.SetMetaData("0020|0032", "\\".join(f"{v:g}" for v in pos))
        sl.SetMetaData("0020|1041", f"{pos[2]:g}")
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0008|0018", f"{DEMO_SERIES_UID}.{k + 1}")
        writer.SetFileName(str(folder / f"IM{k + 1:04d}.dcm"))
        writer.Execute(sl)


# --------------------------------------------------------------------------- main
def content_hashes(folder: Path) -> dict[str, str]:
    """Hashes of the arrays and geometry (not the file bytes: gzip/zip headers hold times)."""
    import SimpleITK as sitk

    out = {}
    for name in ("demo_scan.nii.gz", "demo_mask.nii.gz"):
        img = sitk.ReadImage(str(folder / name))
        h = hashlib.sha256(sitk.GetArrayViewFromImage(img).tobytes())
        h.update(repr((img.GetSpacing(), img.GetOrigin(), img.GetDirection())).encode())
        out[name] = h.hexdigest()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder / "demo_dicom")))
    img = reader.Execute()
    h = hashlib.sha256(sitk.GetArrayViewFromImage(img).tobytes())
    h.update(repr(tuple(round(v, 6) for v in (*img.GetSpacing(), *img.GetOrigin()))).encode())
    out["demo_dicom"] = h.hexdigest()
    with np.load(folder / "cases2d.npz") as z:
        h = hashlib.sha256()
        for key in sorted(z.files):
            h.update(key.encode() + np.ascontiguousarray(z[key]).tobytes())
        out["cases2d.npz"] = h.hexdigest()
    return out


def build(out: Path, seed: int) -> dict:
    import SimpleITK as sitk

    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    vol, truth, records = make_demo(seed)
    sitk.WriteImage(_sitk_image(vol), str(out / "demo_scan.nii.gz"), useCompression=True)
    sitk.WriteImage(_sitk_image(truth), str(out / "demo_mask.nii.gz"), useCompression=True)
    if (out / "demo_dicom").exists():
        shutil.rmtree(out / "demo_dicom")
    write_dicom_series(vol, out / "demo_dicom")
    cases = make_cases(seed)
    np.savez_compressed(out / "cases2d.npz", **cases)
    manifest = {
        "seed": seed,
        "generator": "scripts/make_sample_data.py",
        "demo": {
            "shape_zyx": list(vol.shape),
            "spacing_xyz": list(demo_geometry()[0]),
            "origin_xyz": list(demo_geometry()[1]),
            "lesion_voxels": int(truth.sum()),
            "slices_with_lesion": int(truth.any(axis=(1, 2)).sum()),
            "lesions": records,
        },
        "cases2d": {name: n for name, n in SPLITS.items()},
        "content_sha256": content_hashes(out),
    }
    (out / "sample_data_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"built sample data in {time.perf_counter() - t0:.1f} s -> {out}")
    return manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "sample_data")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare")
    args = ap.parse_args(argv)
    if not args.check:
        build(args.out, args.seed)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = build(Path(tmp), args.seed)
    old = json.loads((args.out / "sample_data_manifest.json").read_text())
    same = old["content_sha256"] == fresh["content_sha256"]
    print(
        "identical" if same else f"DIFFERENT: {old['content_sha256']} vs {fresh['content_sha256']}"
    )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
