"""Where the files shipped inside the package live (``napari_consign/sample_data``).

Resolved with :mod:`importlib.resources`, so they work from an installed wheel. A leaf module:
it imports nothing from the package, so every layer (the bundled model in ``models/``, the
napari sample data, the demo) may use it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["sample_data_path"]


def sample_data_path(name: str) -> Path:
    """Filesystem path of a shipped sample-data file or folder."""
    res = files("napari_consign") / "sample_data" / name
    path = Path(str(res))
    if not path.exists():
        raise FileNotFoundError(
            f"sample data {name!r} not found at {path}; see sample_data/README.md to rebuild "
            "it (scripts/make_sample_data.py, scripts/train_model.py)"
        )
    return path
