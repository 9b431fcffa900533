"""Medical image I/O: scans to (z, y, x) arrays with exact physical geometry, and back.

Orientation convention: every scan is reoriented to LPS on load (axis permutation and flips,
no resampling); napari world coordinates are LPS millimetres in (z, y, x) order; the file's own
grid and orientation code are kept in ``Geometry`` (and in ``layer.metadata``) so masks are
written back on the source voxel grid. See ``geometry`` for details.

Imports only numpy; SimpleITK is imported when a file is read or written.
"""

from .dicom import SeriesInfo
from .dicom_volume import list_dicom_series
from .errors import (
    ConsignIOError,
    DicomSeriesError,
    GeometryWarning,
    UnreadableImageError,
    UnsupportedImageError,
    WriteRefusedError,
)
from .geometry import (
    GEOMETRY_KEY,
    Geometry,
    Grid,
    attach_geometry,
    geometry_from_metadata,
    layer_kwargs,
)
from .nifti_writer import write_nifti
from .read_scan import read_volume
from .volume import Volume, volume_from_image

__all__ = [
    "GEOMETRY_KEY",
    "ConsignIOError",
    "DicomSeriesError",
    "Geometry",
    "GeometryWarning",
    "Grid",
    "SeriesInfo",
    "UnreadableImageError",
    "UnsupportedImageError",
    "Volume",
    "WriteRefusedError",
    "attach_geometry",
    "geometry_from_metadata",
    "layer_kwargs",
    "list_dicom_series",
    "read_volume",
    "volume_from_image",
    "write_nifti",
]
