"""Units with ground truth for calibrating now, read from an NPZ or a folder of scans."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cases import read_units
from ..conformal.errors import ConformalInputError
from ..models.card import ModelCard


@dataclass
class CalibrationCases:
    """2D units with ground truth for calibrating now (and training AT/COAT predictors)."""

    images: list[np.ndarray]  # (n, H, W) stacks, one per volume or NPZ
    masks: list[np.ndarray]
    train_images: list[np.ndarray] = field(default_factory=list)
    train_masks: list[np.ndarray] = field(default_factory=list)
    description: str = ""

    @property
    def n_units(self) -> int:
        return int(sum(len(a) for a in self.images))

    @property
    def n_train(self) -> int:
        return int(sum(len(a) for a in self.train_images))


def _subsample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=k, replace=False)) if n > k else np.arange(n)


def read_cases(
    source: str | Path,
    max_cases: int = 200,
    seed: int = 0,
    train_fraction: float = 1 / 3,
    card: ModelCard | None = None,
) -> CalibrationCases:
    """Calibration units from an NPZ (``images``/``masks``, optional ``scale``, ``split`` and
    ``split_names`` as in ``sample_data/cases2d.npz``) or a folder of labelled scans
    (:mod:`napari_consign.cases`: every axial slice with structure is a unit). Without split
    names, ``train_fraction`` of the units train AT/COAT predictors and the rest calibrate. At
    most ``max_cases`` calibration units (and half as many training units) are drawn, seeded.
    A folder's scans are resampled to the model ``card``'s spacing when one is given (an NPZ's
    units are taken as they are)."""
    source = Path(source)
    rng = np.random.default_rng(seed)
    if not source.exists():
        raise ConformalInputError(f"{source}: no such file or folder")
    if source.is_dir():
        images, all_masks, desc = read_units(source, card)
        split = None
    else:
        try:
            with np.load(source, allow_pickle=False) as z:
                if "images" not in z.files or "masks" not in z.files:
                    raise ConformalInputError(
                        f"{source.name} needs arrays 'images' (n, H, W) and 'masks' (n, H, W); "
                        f"it holds {', '.join(z.files)}"
                    )
                images = z["images"].astype(np.float32)
                if "scale" in z.files:
                    images = images * np.asarray(z["scale"], np.float32).reshape(-1, 1, 1)
                all_masks = z["masks"]
                split = None
                if "split" in z.files and "split_names" in z.files:
                    names = [str(s) for s in z["split_names"]]
                    split = np.array(names)[z["split"]]
        except (OSError, ValueError) as exc:
            raise ConformalInputError(f"{source.name}: not a readable NPZ ({exc})") from None
        desc = source.name
    if images.ndim != 3 or all_masks.shape != images.shape:
        raise ConformalInputError(
            f"images {images.shape} and masks {all_masks.shape}: expected two (n, H, W) stacks"
        )
    all_masks = (np.asarray(all_masks) != 0).astype(np.uint8)
    if split is not None and "calibration" in set(split):
        cal = np.flatnonzero(split == "calibration")
        train = np.flatnonzero(split == "threshold")
    else:
        order = rng.permutation(len(images))
        n_train = round(train_fraction * len(images))
        train, cal = np.sort(order[:n_train]), np.sort(order[n_train:])
    cal = cal[_subsample(len(cal), max_cases, rng)]
    train = train[_subsample(len(train), max(1, max_cases // 2), rng)] if len(train) else train
    if len(cal) == 0:
        raise ConformalInputError(f"{source.name}: no calibration units")
    return CalibrationCases(
        images=[images[cal]],
        masks=[all_masks[cal]],
        train_images=[images[train]] if len(train) else [],
        train_masks=[all_masks[train]] if len(train) else [],
        description=f"{len(cal)} calibration + {len(train)} training units from {desc}",
    )
