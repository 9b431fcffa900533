"""Former home of :mod:`napari_consign.io.safe_write`, kept only for ``calibration.py``.

Delete this module once ``calibration.py`` imports ``napari_consign.io.safe_write``.
"""

from .io.safe_write import check_target, write_npz

__all__ = ["check_target", "write_npz"]
