"""Labelled scans on disk: the pairing rule and their 2D units (sampling: ``scan_sampling``).

Pairing rule (the widget's "calibrate now" and ``napari-consign calibrate`` alike):

* ``X.nii.gz`` (or ``.nii``) next to ``X_mask.nii.gz`` (or ``_seg``, ``_label``, ``_labels``,
  ``_gt``), in one folder; or
* sub-folders ``images/`` and ``masks/`` (or ``labels/``) holding entries of the same name:
  NIfTI files, or DICOM series folders (a DICOM image may have a NIfTI mask of the same stem).

Every image must have a mask and every mask an image: an unpaired entry is an error, never
silently skipped. A mask must lie on its image's voxel grid. Each axial slice whose mask is
not empty becomes one 2D unit (slices without structure have no defined coverage; the
evaluation excludes empty masks too); all scans must share one in-plane size. With a model card,
scans are resampled to the model's spacing first, as the analysis resamples a scan.

Nothing here imports Qt, napari or torch; SimpleITK is imported when a scan is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .conformal.dataset import SegmentationSet
from .conformal.errors import ConformalInputError
from .io.readers import NIFTI_SUFFIXES

if TYPE_CHECKING:
    from .models.card import ModelCard

MASK_SUFFIXES = ("_mask", "_seg", "_label", "_labels", "_gt")


class CasesError(ConformalInputError):
    """A folder of labelled scans that breaks the pairing rule or does not read."""


def nifti_stem(name: str) -> str | None:
    """``"X"`` for ``"X.nii.gz"`` or ``"X.nii"`` (any case), else None."""
    low = name.lower()
    for s in NIFTI_SUFFIXES:
        if low.endswith(s):
            return name[: -len(s)]
    return None


def _entry_stem(path: Path) -> str:
    return (nifti_stem(path.name) or path.stem) if path.is_file() else path.name


def _entries(folder: Path) -> dict[str, Path]:
    """NIfTI files and sub-folders (DICOM series) of ``folder`` by stem."""
    return {
        _entry_stem(p): p
        for p in sorted(folder.iterdir())
        if not p.name.startswith(".") and (p.is_dir() or nifti_stem(p.name) is not None)
    }


def _plural(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _split_folder_pairs(folder: Path, img_dir: Path, mask_dir: Path) -> list[tuple[Path, Path]]:
    images, masks = _entries(img_dir), _entries(mask_dir)
    unpaired = sorted(set(images) ^ set(masks))
    if unpaired:
        raise CasesError(
            f"{folder}: {len(unpaired)} unpaired {_plural(len(unpaired), 'entry', 'entries')} "
            f"in images/ and {mask_dir.name}/ ({', '.join(unpaired[:3])}); every image "
            "needs a mask of the same name"
        )
    return [(images[k], masks[k]) for k in sorted(images)]


def _flat_pairs(folder: Path) -> list[tuple[Path, Path]]:
    stems = {
        nifti_stem(f.name): f
        for f in sorted(folder.iterdir())
        if f.is_file() and nifti_stem(f.name) is not None
    }
    pairs, used = [], set()
    for stem, image in stems.items():
        if any(stem.lower().endswith(s) for s in MASK_SUFFIXES):
            continue
        mask = next((stems[stem + s] for s in MASK_SUFFIXES if stem + s in stems), None)
        if mask is not None:
            pairs.append((image, mask))
            used |= {image, mask}
    loose = sorted(f.name for f in stems.values() if f not in used)
    if loose:
        raise CasesError(
            f"{folder}: unpaired file(s) {', '.join(loose[:3])}; name pairs X.nii.gz + "
            f"X{MASK_SUFFIXES[0]}.nii.gz or use images/ and masks/ with equal names"
        )
    return pairs


def find_case_pairs(folder: str | Path) -> list[tuple[Path, Path]]:
    """Image/mask pairs of ``folder`` by the pairing rule, sorted by name.

    Raises :class:`CasesError` when the folder is missing, holds no pair, or holds an entry
    without its partner.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CasesError(f"{folder}: no such folder")
    img_dir = folder / "images"
    mask_dir = next((folder / s for s in ("masks", "labels") if (folder / s).is_dir()), None)
    if img_dir.is_dir() and mask_dir is not None:
        pairs = _split_folder_pairs(folder, img_dir, mask_dir)
    else:
        pairs = _flat_pairs(folder)
    if not pairs:
        raise CasesError(
            f"{folder} holds no image + mask pairs: name them X.nii.gz and X_mask.nii.gz, or "
            "put them in images/ and masks/ with the same names"
        )
    return pairs


def _grid(volume: Any) -> dict:
    g = volume.geometry
    return {"spacing": g.spacing, "origin": g.origin, "direction": g.direction}


def check_same_grid(image: tuple, mask: tuple, what: str, against: str) -> None:
    """Refuse a mask whose voxel grid (shape, spacing, origin, direction) is not its image's.

    ``image`` and ``mask`` are ``(shape, {"spacing", "origin", "direction"})`` (SimpleITK
    order); spacings agree to 0.1 %, origins to 1 % of a voxel, directions to 1e-4.
    """
    (shape_i, gi), (shape_m, gm) = image, mask
    if tuple(shape_i) != tuple(shape_m):
        raise CasesError(
            f"{what}: shape {tuple(shape_m)} (z, y, x) differs from {against} {tuple(shape_i)}; "
            "a mask must lie on its image's voxel grid"
        )
    spacing = np.asarray(gi["spacing"], float)
    for key, close in (
        ("spacing", np.allclose(gm["spacing"], spacing, rtol=1e-3, atol=0)),
        ("origin", np.allclose(gm["origin"], gi["origin"], rtol=0, atol=0.01 * spacing.min())),
        ("direction", np.allclose(gm["direction"], gi["direction"], rtol=0, atol=1e-4)),
    ):
        if not close:
            mine = ", ".join(f"{v:g}" for v in gm[key])
            theirs = ", ".join(f"{v:g}" for v in gi[key])
            raise CasesError(
                f"{what}: {key} ({mine}) differs from {against} ({theirs}); a mask must lie on "
                "its image's voxel grid (resample it first)"
            )


def check_mask_values(array: np.ndarray, what: str) -> None:
    """Refuse a mask holding NaN or non-integer values (e.g. probabilities, 0.3)."""
    a = np.asarray(array)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise CasesError(f"{what}: the mask holds NaN or infinite values")
        frac = a[a != np.round(a)]
        if frac.size:
            raise CasesError(
                f"{what}: the mask holds non-integer values (e.g. {float(frac[0]):g}); a mask "
                "holds labels 0 (background) and 1 (structure), not probabilities"
            )


def check_finite(array: np.ndarray, what: str) -> None:
    """Refuse a scan with NaN or infinite voxels (a model would read them as 0 or fail)."""
    a = np.asarray(array)
    if np.issubdtype(a.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:
            raise CasesError(f"{what}: {bad} NaN or infinite voxel(s); fix or mask them first")


def read_pair(
    image: Path, mask: Path, card: ModelCard | None = None
) -> tuple[np.ndarray, np.ndarray, int, np.ndarray | None]:
    """The slices with structure of one scan: ``(images, masks, n_empty_slices, body)``.

    ``images`` is float32 ``(Z', H, W)``, ``masks`` uint8 0/1 (any non-zero label is
    structure); slices whose mask is empty are left out and counted. With a model ``card``
    the scan is first seen as the analysis sees a scan (:class:`~.scan_view.ScanView`):
    resampled to the card's spacing (linear; the mask nearest-neighbour), and ``body`` is the
    scan's 3D body mask on that grid (same slices as ``images``) when the card names the rule,
    else None.
    """
    from .io import read_volume
    from .scan_view import ScanView

    vi, vm = read_volume(image), read_volume(mask)
    check_same_grid(
        (vi.array.shape, _grid(vi)),
        (vm.array.shape, _grid(vm)),
        mask.name,
        f"its image {image.name}",
    )
    check_mask_values(vm.array, mask.name)
    check_finite(vi.array, image.name)
    volume, masks, body = vi.array, (vm.array != 0).astype(np.uint8), None
    if card is not None:
        view = ScanView.prepare(volume, card, tuple(vi.geometry.spacing_zyx), vi.modality)
        volume, body = view.volume, view.body_model
        masks = masks if view.grid is None else view.grid.to_model_labels(masks)
    keep = np.flatnonzero(masks.any(axis=(1, 2)))
    body = None if body is None else np.asarray(body, bool)[keep]
    return (
        np.asarray(volume)[keep].astype(np.float32),
        masks[keep],
        int(masks.shape[0] - keep.size),
        body,
    )


def _check_one_size(shapes: set[tuple[int, ...]]) -> None:
    if len(shapes) > 1:
        raise CasesError(
            f"the scans have different in-plane sizes {sorted(shapes)}; calibrate on scans of "
            "one size"
        )


def read_units(
    folder: str | Path, card: ModelCard | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    """Every slice with structure of every scan in ``folder``, stacked (on the card's grid
    when a model ``card`` is given, see :func:`read_pair`).

    Returns ``(images, masks, description)``: float32 and uint8 ``(n, H, W)`` stacks, and a
    sentence saying how many scans and slices were read and how many empty slices left out.
    """
    pairs = find_case_pairs(folder)
    parts = [read_pair(image, mask, card) for image, mask in pairs]
    _check_one_size({p[0].shape[1:] for p in parts})
    images = np.concatenate([p[0] for p in parts])
    masks = np.concatenate([p[1] for p in parts])
    n_empty = sum(p[2] for p in parts)
    description = (
        f"{len(pairs)} scan(s) in {Path(folder).name}: {len(images)} slices with structure, "
        f"{n_empty} empty slices left out"
    )
    return images, masks, description


def stack_sets(sets: list[SegmentationSet]) -> SegmentationSet:
    """One :class:`SegmentationSet` of the units of several (one in-plane size required).

    Samples (and images) are kept only when every part has them.
    """
    _check_one_size({tuple(s.masks.shape[1:]) for s in sets})

    def joined(arrays: list[np.ndarray | None]) -> np.ndarray | None:
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    return SegmentationSet(
        joined([s.samples for s in sets]),
        np.concatenate([s.scores for s in sets]),
        np.concatenate([s.masks for s in sets]),
        joined([s.images for s in sets]),
    )
