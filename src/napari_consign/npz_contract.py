"""Reading the NPZ contract (README, "NPZ contract") into a :class:`SegmentationSet`.

Arrays are loaded with ``allow_pickle=False``: an NPZ can never execute code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .conformal.dataset import SegmentationSet
from .conformal.errors import ConformalInputError


class ContractError(ConformalInputError):
    """The file is missing, unreadable or does not follow the NPZ contract."""


def load_segmentation_set(path: str | Path) -> SegmentationSet:
    """Load ``samples``, ``masks`` and optional ``images`` from an NPZ file and validate them."""
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ContractError(f"{path}: not a readable NPZ file (np.savez writes one)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("samples", "masks") if k not in npz.files]
            if missing:
                raise ContractError(
                    f"{path}: missing array(s) {', '.join(missing)}; an NPZ needs 'samples' "
                    "(n, N_s, H, W) and 'masks' (n, H, W), optionally 'images'"
                )
            arrays = {k: npz[k] for k in ("samples", "masks", "images") if k in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ContractError(f"{path}: not a readable NPZ file ({exc})") from None
    except ValueError as exc:  # object arrays would need pickle
        raise ContractError(f"{path}: unsupported NPZ content ({exc})") from None
    try:
        return SegmentationSet.from_samples(**arrays)
    except ConformalInputError as exc:
        raise ContractError(f"{path}: {exc}") from None
