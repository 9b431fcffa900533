"""The input cases shared by the round-trip and napari tests: real files shipped with
pydicom/nibabel, and scans written here with SimpleITK (oblique, flipped, permuted directions;
DICOM series; 2D; multi-frame). ``build_case(name, tmp, rng)`` gives the path and a reference
read independently with SimpleITK (``ReadImage``, or ``ImageSeriesReader`` with GDCM's own file
order), never through the code under test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from io_helpers import (
    nibabel_file,
    pydicom_data,
    pydicom_file,
    rotation,
    write_dicom_series,
    write_image,
)

sitk = pytest.importorskip("SimpleITK")

MR2_LOCALIZER_UID = "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.481"
"""The one series of pydicom's MR2 folder that forms a volume (the others are tri-planar)."""


@dataclass
class Case:
    path: str
    reference: object  # SimpleITK image of the original file, on its own grid
    frame: int | None = None
    warns: tuple[str, ...] = ()  # substrings of the expected GeometryWarnings


def _series_reference(folder: Path, uid: str | None = None):
    r = sitk.ImageSeriesReader()
    files = (
        r.GetGDCMSeriesFileNames(str(folder), uid) if uid else r.GetGDCMSeriesFileNames(str(folder))
    )
    r.SetFileNames(files)
    return r.Execute()


def _random(rng, shape, lo=0, hi=2000):
    return rng.integers(lo, hi, shape).astype(np.int16)


PERMUTED = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)  # index axes x, y, z point P, S, L
FLIPPED = np.diag([-1.0, 1.0, -1.0]) @ np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], float)


def build_case(name: str, tmp: Path, rng: np.random.Generator) -> Case:
    real_dicom = {
        "CT_small": "CT_small.dcm",
        "MR_small": "MR_small.dcm",
        "MR_small_RLE": "MR_small_RLE.dcm",
        "MR_small_jpeg_ls": "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_j2k": "MR_small_jp2klossless.dcm",
        "MR_small_bigendian": "MR_small_bigendian.dcm",
        "MR_small_implicit": "MR_small_implicit.dcm",
        "MR_small_expb": "MR_small_expb.dcm",
        "MR_small_padded": "MR_small_padded.dcm",
        "deflated_dcm": "image_dfl.dcm",
    }
    if name in real_dicom:
        p = pydicom_file(real_dicom[name])
        no_spacing = ("No Pixel Spacing",) if name == "deflated_dcm" else ()  # an OT image
        return Case(p, sitk.ReadImage(p), warns=no_spacing)
    if name == "rtdose_multiframe":
        p = pydicom_file("rtdose.dcm")
        return Case(p, sitk.ReadImage(p), warns=("Multi-frame",))
    if name == "CT2_series":  # 4 files: a 3-slice stack (rounded positions) and one far away
        folder = pydicom_data() / "dicomdirtests" / "77654033" / "CT2"
        stack = [str(folder / f) for f in ("17136", "17166", "17196")]  # sorted along z
        return Case(str(folder), sitk.ReadImage(stack))
    if name == "MR2_folder":  # 3 series: two tri-planar pilots (mixed stacks), one localiser
        folder = pydicom_data() / "dicomdirtests" / "98892003" / "MR2"
        return Case(str(folder), _series_reference(folder, MR2_LOCALIZER_UID))
    if name == "MR700_one_oblique_file":
        folder = pydicom_data() / "dicomdirtests" / "98892003" / "MR700"
        p = str(sorted(folder.iterdir())[0])
        return Case(p, sitk.ReadImage(p), warns=("Oblique",))  # its own stack of one
    if name == "anatomical_nii":
        p = nibabel_file("anatomical.nii")
        return Case(p, sitk.ReadImage(p))
    if name == "example4d_frame1":
        p = nibabel_file("example4d.nii.gz")
        return Case(p, sitk.ReadImage(p)[:, :, :, 1], frame=1, warns=("Oblique",))
    if name == "nii_oblique":
        d = rotation(0.2, -0.15, 0.35)
        p = write_image(
            tmp / "obl.nii.gz",
            _random(rng, (6, 7, 8)),
            spacing=(0.7, 0.8, 2.0),
            origin=(-12.5, 40.25, 3.0),
            direction=d,
        )
        return Case(str(p), sitk.ReadImage(str(p)), warns=("Oblique",))
    if name == "nii_flipped":
        p = write_image(
            tmp / "flip.nii",
            _random(rng, (5, 6, 7)),
            spacing=(1.0, 1.5, 2.5),
            origin=(80.0, 90.0, -30.0),
            direction=np.diag([-1.0, 1.0, -1.0]),
        )
        return Case(str(p), sitk.ReadImage(str(p)))
    if name == "nii_permuted_flipped":
        p = write_image(
            tmp / "perm.nii.gz",
            _random(rng, (5, 6, 7)),
            spacing=(0.9, 1.2, 3.0),
            origin=(5.0, -6.0, 7.0),
            direction=FLIPPED,
        )
        return Case(str(p), sitk.ReadImage(str(p)))
    if name == "mha_permuted_oblique":
        p = write_image(
            tmp / "perm.mha",
            _random(rng, (4, 6, 5)),
            spacing=(0.5, 0.6, 0.7),
            origin=(1.0, 2.0, 3.0),
            direction=rotation(0.1, 0.0, 0.0) @ PERMUTED,
        )
        return Case(str(p), sitk.ReadImage(str(p)), warns=("Oblique",))
    if name == "mhd_plain":
        p = write_image(tmp / "plain.mhd", _random(rng, (3, 4, 5)), spacing=(2.0, 2.0, 4.0))
        return Case(str(p), sitk.ReadImage(str(p)))
    if name == "nrrd_flipped":
        p = write_image(
            tmp / "flip.nrrd",
            _random(rng, (4, 5, 6)),
            spacing=(1.0, 1.0, 1.5),
            origin=(0.5, 0.5, 0.5),
            direction=np.diag([1.0, -1.0, -1.0]),
        )
        return Case(str(p), sitk.ReadImage(str(p)))
    if name == "mha_2d_rotated":
        p = write_image(
            tmp / "slice.mha",
            _random(rng, (9, 7)),
            spacing=(0.3, 0.4),
            origin=(10.0, 20.0),
            direction=[[0.0, -1.0], [1.0, 0.0]],
        )
        return Case(str(p), sitk.ReadImage(str(p)))
    if name.startswith("series_"):
        kinds = {
            "series_axial": dict(row=(1, 0, 0), col=(0, 1, 0)),
            "series_oblique": dict(
                row=tuple(rotation(0.1, 0.2, 0.3)[:, 0]), col=tuple(rotation(0.1, 0.2, 0.3)[:, 1])
            ),
            "series_sagittal_reversed": dict(row=(0, 1, 0), col=(0, 0, -1), reverse_instances=True),
            "series_coronal_flipped": dict(row=(-1, 0, 0), col=(0, 0, -1), reverse_instances=True),
        }
        kind = name.removesuffix("_from_one_file")
        folder = tmp / kind
        paths = write_dicom_series(folder, _random(rng, (5, 6, 7)), **kinds[kind])
        ref = _series_reference(folder)
        warns = ("Oblique",) if "oblique" in name else ()
        if name.endswith("_from_one_file"):
            return Case(str(paths[2]), ref, warns=warns)
        return Case(str(folder), ref, warns=warns)
    if name == "multiframe_dcm":
        img = sitk.GetImageFromArray(rng.integers(0, 3000, (4, 6, 5)).astype(np.uint16))
        img.SetSpacing((0.5, 0.6, 2.5))
        img.SetOrigin((1.0, 2.0, 3.0))
        p = tmp / "mf.dcm"
        sitk.WriteImage(img, str(p))
        return Case(str(p), sitk.ReadImage(str(p)), warns=("Multi-frame",))
    raise KeyError(name)


CASES = [
    "CT_small",
    "MR_small",
    "MR_small_RLE",
    "MR_small_jpeg_ls",
    "MR_small_j2k",
    "MR_small_bigendian",
    "MR_small_implicit",
    "MR_small_expb",
    "MR_small_padded",
    "deflated_dcm",
    "rtdose_multiframe",
    "CT2_series",
    "MR2_folder",
    "MR700_one_oblique_file",
    "anatomical_nii",
    "example4d_frame1",
    "nii_oblique",
    "nii_flipped",
    "nii_permuted_flipped",
    "mha_permuted_oblique",
    "mhd_plain",
    "nrrd_flipped",
    "mha_2d_rotated",
    "series_axial",
    "series_oblique",
    "series_sagittal_reversed",
    "series_coronal_flipped",
    "series_axial_from_one_file",
    "series_sagittal_reversed_from_one_file",
    "multiframe_dcm",
]
