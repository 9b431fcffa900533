"""DICOM: byte sniffing, headers, series split into stacks, folder/DICOMDIR scans, reading.

Modules: ``sniff`` (pure-Python probes used by napari's ``get_reader``), ``headers`` (GDCM
header facts of one file), ``stacks`` (a series split into stacks, as a DICOM viewer does),
``dicomdir`` (files listed by a DICOMDIR), ``scan`` (recursive, bounded folder search and
grouping), ``read`` (one stack to a ``SimpleITK.Image``, resampled when uneven). Importing this
package imports neither SimpleITK nor pydicom.
"""

from . import scan
from .headers import SliceInfo, read_slice_info
from .read import check_size, read_series
from .scan import (
    MAX_DEPTH,
    MAX_FILES,
    candidate_files,
    choose_series,
    find_files,
    scan_folder,
    series_from_files,
    series_of_file,
)
from .sniff import (
    _parse_head,
    describe_dataset,
    folder_files,
    has_pixel_data,
    is_dicom_file,
    is_dicomdir,
    looks_like_dicom_image,
    looks_like_raw_dicom,
    non_image_kind,
    peek_dataset,
    transfer_syntax,
)
from .stacks import SeriesInfo, check_stack, group_stacks, orientation_label, split_series

__all__ = [
    "MAX_DEPTH",
    "MAX_FILES",
    "SeriesInfo",
    "SliceInfo",
    "_parse_head",
    "candidate_files",
    "check_size",
    "check_stack",
    "choose_series",
    "describe_dataset",
    "find_files",
    "folder_files",
    "group_stacks",
    "has_pixel_data",
    "is_dicom_file",
    "is_dicomdir",
    "looks_like_dicom_image",
    "looks_like_raw_dicom",
    "non_image_kind",
    "orientation_label",
    "peek_dataset",
    "read_series",
    "read_slice_info",
    "scan",
    "scan_folder",
    "series_from_files",
    "series_of_file",
    "split_series",
    "transfer_syntax",
]
