"""The reader registry: the manifest's patterns and the suffix lists derive from it."""

from __future__ import annotations

from importlib.resources import files

import numpy as np
import pytest
import yaml
from io_helpers import pydicom_file, write_image

from napari_consign.io import readers
from napari_consign.io.readers import FORMATS, format_of, sniff_image_file


def _manifest() -> dict:
    return yaml.safe_load((files("napari_consign") / "napari.yaml").read_text())


def test_manifest_reader_patterns_are_the_registry():
    (reader,) = _manifest()["contributions"]["readers"]
    assert sorted(reader["filename_patterns"]) == sorted(readers.reader_patterns())
    assert len(set(readers.reader_patterns())) == len(readers.reader_patterns())


def test_manifest_writer_extensions_are_the_writable_formats():
    (writer,) = _manifest()["contributions"]["writers"]
    assert writer["filename_extensions"] == readers.writer_extensions() == [".nii.gz", ".nii"]


def test_suffix_lists_come_from_the_registry():
    from napari_consign import cases
    from napari_consign.io import nifti_writer

    assert cases.NIFTI_SUFFIXES is nifti_writer.NIFTI_SUFFIXES is readers.NIFTI_SUFFIXES
    assert set(readers.ALL_SUFFIXES) == {s for f in FORMATS for s in f.suffixes}
    assert all(s == s.lower() and s.startswith(".") for s in readers.ALL_SUFFIXES)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.nii.gz", "NIfTI"),
        ("A.NII", "NIfTI"),
        ("b.mhd", "MetaImage"),
        ("c.nrrd", "NRRD"),
        ("d.IMA", "DICOM"),
        ("IM000001", None),
        ("e.png", None),
    ],
)
def test_format_of_by_suffix(name, expected):
    fmt = format_of(name)
    assert (fmt.name if fmt else None) == expected


def test_sniff_real_files_of_every_format(tmp_path):
    """Each registered format's header check accepts a real file and refuses a renamed one."""
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    for suffix in (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd"):
        path = write_image(tmp_path / f"x{suffix}", arr)
        assert sniff_image_file(path), suffix
    assert sniff_image_file(pydicom_file("CT_small.dcm"))
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not an image at all" * 40)
    assert not sniff_image_file(junk)
    fake = tmp_path / "fake.nrrd"
    fake.write_bytes(b"NDims = 3\nElementType = MET_SHORT\n")
    assert not sniff_image_file(fake)
    assert not sniff_image_file(tmp_path / "missing.mha")
