"""Bad input: exit code 2 and one line on stderr saying why."""

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch


def _fails(run_cli, capsys, argv, expected):
    code = run_cli(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and expected in err[0], err
    return err[0]


def _copy_pairs(cases_dir, folder, n=2):
    folder.mkdir()
    for i in range(n):
        for suffix in ("", "_mask"):
            name = f"case{i}{suffix}.nii.gz"
            shutil.copy(cases_dir / name, folder / name)
    return folder


def test_calibrate_bad_folders(run_cli, cases_dir, tmp_path, capsys):
    base = ["calibrate", "--out", str(tmp_path / "b"), "--quiet", "--cases"]
    _fails(run_cli, capsys, [*base, str(tmp_path / "missing")], "no such folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(run_cli, capsys, [*base, str(empty)], "no image + mask pairs")

    loose = _copy_pairs(cases_dir, tmp_path / "loose")
    shutil.copy(cases_dir / "case5.nii.gz", loose / "lonely.nii.gz")
    _fails(run_cli, capsys, [*base, str(loose)], "unpaired file(s) lonely.nii.gz")

    split = tmp_path / "split"
    (split / "images").mkdir(parents=True)
    (split / "masks").mkdir()
    for i in range(2):
        shutil.copy(cases_dir / f"case{i}.nii.gz", split / "images" / f"s{i}.nii.gz")
    shutil.copy(cases_dir / "case0_mask.nii.gz", split / "masks" / "s0.nii.gz")
    _fails(run_cli, capsys, [*base, str(split)], "unpaired entry in images/ and masks/ (s1)")

    bad = _copy_pairs(cases_dir, tmp_path / "shapes", n=1)
    sitk.WriteImage(
        sitk.GetImageFromArray(np.zeros((4, 16, 16), np.uint8)), str(bad / "case0_mask.nii.gz")
    )
    _fails(run_cli, capsys, [*base, str(bad)], "differs from its image")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["calibrate", "--methods", "crc,magic"], "unknown method(s) magic"),
        (["calibrate", "--train-fraction", "1.5"], "--train-fraction must lie in (0, 1)"),
        (["evaluate", "--methods", "nope"], "unknown method(s) nope"),
        (["evaluate", "--alphas", "0.1,2"], "every level must lie in (0, 1)"),
        (["predict", "--bundle", "NOT_A_BUNDLE"], "not a napari-consign calibration bundle"),
        (["predict", "--bundle", "CRC", "--alpha", "x"], "expected numbers"),
        (["predict", "--bundle", "CRC", "--model", "JUNK"], "is not a model file"),
        (["evaluate", "--device", "nonsense"], "--device: unknown device 'nonsense'"),
        (["calibrate", "--n-samples", "many"], "invalid int value: 'many' (see --help)"),
        (["evaluate", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_arguments(run_cli, cases_dir, samples_npz, tmp_path, capsys, argv, expected):
    junk = tmp_path / "junk.npz"
    np.savez(junk, a=np.zeros(2))
    crc = tmp_path / "crc.npz"
    if "CRC" in argv:
        assert run_cli(
            ["calibrate", "--samples", str(samples_npz), "--model-id", "m", "--out",
             str(tmp_path), "--quiet"]
        ) == 0  # fmt: skip
    names = {"NOT_A_BUNDLE": str(junk), "CRC": str(crc), "JUNK": str(junk)}
    argv = [names.get(a, a) for a in argv]
    where = {
        "calibrate": ["--cases", str(cases_dir), "--out", str(tmp_path / "b"), "--quiet"],
        "evaluate": ["--samples", str(samples_npz), "--quiet"],
        "predict": ["--scan", str(cases_dir / "case0.nii.gz"), "--out", str(tmp_path / "p")],
    }[argv[0]]
    _fails(run_cli, capsys, [*argv, *where], expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_unavailable_cuda_is_one_line(run_cli, samples_npz, capsys):
    argv = ["evaluate", "--samples", str(samples_npz), "--device", "cuda", "--quiet"]
    _fails(run_cli, capsys, argv, "CUDA is not available")


def test_existing_bundles_and_npz_without_identity(run_cli, samples_npz, tmp_path, capsys):
    out = ["--samples", str(samples_npz), "--out", str(tmp_path / "b"), "--quiet"]
    _fails(run_cli, capsys, ["calibrate", *out], "records no model_identity; pass --model-id")
    assert run_cli(["calibrate", *out, "--model-id", "m"]) == 0
    _fails(run_cli, capsys, ["calibrate", *out, "--model-id", "m"], "pass --overwrite")
    assert run_cli(["calibrate", *out, "--model-id", "m", "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["calibrate", "--samples", "x.npz", "--out", "b", "--method", "crc"], "--method"),
        (["evaluate", "--samples", "x.npz", "--method", "crc"], "--method"),
        (["demo", "--head"], "--head"),
    ],
)
def test_abbreviated_flags_are_refused(run_cli, capsys, argv, flag):
    """argparse's prefix matching would silently take --method for --methods."""
    _fails(run_cli, capsys, argv, f"unrecognized arguments: {flag}")
