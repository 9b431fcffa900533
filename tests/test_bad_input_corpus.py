"""The hostile-user corpus of issue 16, built on the fly.

Every refused case must exit with code 2 and one line naming the problem (no traceback), leave
every input and earlier output byte for byte as it was, and leave no file at a final name
(nor a temporary one). Accepted cases give the right result. Cases that could block (FIFOs, a
silent "scheduler") or need a signal run in a subprocess with a timeout; the rest call the
command's ``main()`` in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from napari_consign import cli
from napari_consign.analysis import bundled_bundle_path
from napari_consign.calibration import content_checksum
from napari_consign.io import safe_write
from napari_consign.models.loading import builtin_model_files

SRC = str(Path(__file__).resolve().parents[1] / "src")
TIMEOUT = 120


# --------------------------------------------------------------------------- helpers


def digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (hidden ones too), by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def error_lines(capsys) -> list[str]:
    """stderr's lines other than the scan checks' ``warning:`` lines (the model card's checks
    speak before any sampling; they are information, not the refusal)."""
    lines = capsys.readouterr().err.strip().splitlines()
    return [line for line in lines if not line.startswith(("warning: ", "Caution: "))]


def refused(capsys, argv: list[str], expected: str) -> str:
    """Run the CLI in-process: exit 2, one line on stderr containing ``expected``."""
    code = cli.main(argv)
    err = error_lines(capsys)
    assert code == 2, err
    assert len(err) == 1 and expected in err[0], err
    assert "Traceback" not in err[0]
    return err[0]


def write_scan(path: Path, array, spacing=(0.8, 0.9, 2.5), origin=(0.0, 0.0, 0.0), dtype=None):
    img = sitk.GetImageFromArray(np.asarray(array, dtype=dtype or np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return path


@pytest.fixture
def work(tmp_path, one_torch_thread):
    """A folder with a scan, its mask, the shipped CRC/CONSIGN bundles and a samples NPZ."""
    rng = np.random.default_rng(0)
    scan = rng.normal(100, 20, (2, 32, 32)).astype(np.float32)
    mask = np.zeros((2, 32, 32), np.uint8)
    mask[:, 10:20, 12:22] = 1
    write_scan(tmp_path / "scan.nii.gz", scan)
    write_scan(tmp_path / "scan_mask.nii.gz", mask, dtype=np.uint8)
    for m in ("crc", "consign"):
        shutil.copy(bundled_bundle_path(m), tmp_path / f"{m}.npz")
    samples = rng.random((60, 3, 8, 8)).astype(np.float32)
    masks = (samples.mean(1) > 0.5).astype(np.uint8)
    np.savez(tmp_path / "samples.npz", samples=samples, masks=masks)
    return tmp_path


def predict_argv(work: Path, *extra: str) -> list[str]:
    return [
        "predict",
        "--scan",
        str(work / "scan.nii.gz"),
        "--bundle",
        str(work / "crc.npz"),
        "--out",
        str(work / "out"),
        "--quiet",
        *extra,
    ]


def no_temps(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*consign-*")], "a temporary file was left behind"


# --------------------------------------------------------------------------- data loss


def test_outputs_never_replace_inputs_scans_or_bundles(work, capsys):
    before = digest(work)
    other = work / "other.nii.gz"
    shutil.copy(work / "scan_mask.nii.gz", other)
    before[other.name] = digest(work)[other.name]
    scan, bundle = str(work / "scan.nii.gz"), str(work / "crc.npz")
    cases = [
        (predict_argv(work, "--json", scan, "--overwrite"), "input of this run"),
        (predict_argv(work, "--json", bundle, "--overwrite"), "input of this run"),
        (predict_argv(work, "--json", str(other), "--overwrite"), "NIfTI scan; it is never"),
        (predict_argv(work, "--json", str(work / "consign.npz"), "--overwrite"), "bundle"),
        (["evaluate", "--samples", str(work / "samples.npz"), "--json", scan], "NIfTI scan"),
        (["evaluate", "--samples", str(work / "samples.npz"), "--markdown", bundle], "bundle"),
        (["sample", "--scan", scan, "--out", bundle, "--overwrite"], "bundle"),
        (["sample", "--scan", scan, "--out", str(work / "samples.npz"), "--overwrite"], "NPZ"),
        (
            [
                "calibrate",
                "--samples",
                str(work / "samples.npz"),
                "--out",
                str(work / "scan.nii.gz"),
                "--model-id",
                "m",
            ],
            "is a file",
        ),
    ]
    for argv, expected in cases:
        refused(capsys, argv, expected)
    assert digest(work) == before
    no_temps(work)


def test_reports_need_overwrite_and_two_runs_never_replace_each_other(work, capsys):
    samples = str(work / "samples.npz")
    report = work / "report.json"
    args = ["evaluate", "--samples", samples, "--splits", "1", "--json", str(report), "--quiet"]
    assert cli.main(args) == 0
    capsys.readouterr()
    first = report.read_bytes()
    assert json.loads(first)["written_by"] == "napari-consign evaluate"
    assert oct(report.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    refused(capsys, args, "Pass --overwrite")
    assert report.read_bytes() == first
    assert cli.main([*args, "--overwrite"]) == 0  # an earlier report of this program
    capsys.readouterr()
    (work / "notes.json").write_text('{"mine": 1}')
    mine = ["evaluate", "--samples", samples, "--json", str(work / "notes.json"), "--overwrite"]
    refused(capsys, mine, "never")
    # two predict runs into one folder: the second refuses before sampling
    assert cli.main(predict_argv(work)) == 0
    capsys.readouterr()
    out = work / "out"
    kept = digest(out)
    assert (out / "scan_crc_alpha0.1.nii.gz").is_file()
    refused(capsys, predict_argv(work), "exists")
    assert digest(out) == kept
    no_temps(work)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- full disk


def _full_disk_cases(work: Path, disk: Path) -> list[tuple[list[str], Path]]:
    return [
        (predict_argv(work, "--out", str(disk / "bands")), disk / "bands"),
        (
            [
                "sample",
                "--scan",
                str(work / "scan.nii.gz"),
                "--out",
                str(disk / "s.npz"),
                "--n-samples",
                "2",
                "--quiet",
            ],
            disk / "s.npz",
        ),
        (
            [
                "evaluate",
                "--samples",
                str(work / "samples.npz"),
                "--splits",
                "1",
                "--json",
                str(disk / "r.json"),
                "--quiet",
            ],
            disk / "r.json",
        ),
    ]


def _assert_nothing_final(target: Path) -> None:
    if target.suffix:  # a file: never at its final name
        assert not target.exists()
    else:  # a folder of band files: none published (reports come last)
        assert not [p for p in target.glob("*") if not p.name.startswith(".")]


def test_full_disk_injected_at_the_write_boundary(work, capsys, monkeypatch):
    """A writer that stops after 200 bytes, as ITK does on a full disk, without raising."""
    real = safe_write.write_atomically

    def short(path, write, verify=None, *, replace=False):
        def partial(tmp):
            write(tmp)
            os.truncate(tmp, min(200, os.path.getsize(tmp)))

        return real(path, partial, verify, replace=replace)

    monkeypatch.setattr(safe_write, "write_atomically", short)
    disk = work / "disk"
    disk.mkdir()
    for argv, target in _full_disk_cases(work, disk):
        refused(capsys, argv, "completely")
        _assert_nothing_final(target)
    no_temps(disk)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 256 KiB tmpfs, nearly full (needs mount rights; skipped where CI has none)."""
    disk = tmp_path / "tmpfs"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the injected full disk covers this")
    try:
        filler = disk / "filler"
        with open(filler, "wb") as f:
            try:
                f.write(b"\0" * (256 * 1024))
            except OSError:
                pass
        os.truncate(filler, max(0, os.path.getsize(filler) - 1024))  # leave ~1 KiB free
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_full_disk_for_real(work, capsys, tiny_tmpfs):
    for argv, target in _full_disk_cases(work, tiny_tmpfs):
        code = cli.main(argv)
        err = error_lines(capsys)
        assert code == 2 and len(err) == 1, err
        assert "full" in err[0] or "completely" in err[0], err
        _assert_nothing_final(target)
    no_temps(tiny_tmpfs)


# --------------------------------------------------------------------------- signals, hangs


def _subprocess(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "NAPARI_CONSIGN_DEVICE": "cpu"}
    return subprocess.Popen(
        [sys.executable, *args], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, **kw
    )


@pytest.mark.slow
def test_sigkill_leaves_nothing_at_the_final_name(work):
    out = work / "killed.npz"
    proc = _subprocess(
        [
            "-m",
            "napari_consign",
            "sample",
            "--scan",
            str(work / "scan.nii.gz"),
            "--out",
            str(out),
            "--n-samples",
            "4",
        ]
    )
    seen = b""
    while b"slice" not in seen:  # mid-sampling (or finished, if it was that fast)
        ch = proc.stderr.read(1)
        if not ch:
            break
        seen += ch
    proc.send_signal(signal.SIGKILL)
    proc.wait(TIMEOUT)
    if out.exists():  # the process finished first: then the file is complete
        with np.load(out) as z:
            assert z["samples"].shape[:2] == (2, 4)
    # a temporary file of a dead process is removed by the next write to that name
    dead = _subprocess(["-c", "pass"])
    dead.wait(TIMEOUT)
    stale = work / f".{out.name}.consign-{dead.pid}-00000000.tmp.npz"
    stale.write_bytes(b"partial")
    safe_write.write_text(work / "killed.npz.txt", "x")  # another name: stale temp kept
    assert stale.exists()
    safe_write.write_npz(out, {"a": np.zeros(2)}, replace=True)
    assert not stale.exists()


@pytest.mark.slow
def test_fifos_are_refused_without_blocking(work):
    fifo = work / "pipe.nii.gz"
    os.mkfifo(fifo)
    bfifo = work / "pipe.npz"
    os.mkfifo(bfifo)
    scan, crc = str(work / "scan.nii.gz"), str(work / "crc.npz")
    for argv, expected in [
        (["predict", "--scan", str(fifo), "--bundle", crc, "--out", str(work / "o")], "regular"),
        (["predict", "--scan", scan, "--bundle", str(bfifo), "--out", str(work / "o")], "regular"),
        (["evaluate", "--samples", str(bfifo)], "regular"),
        (
            ["sample", "--scan", scan, "--out", str(work / "s.npz"), "--model", str(bfifo)],
            "regular",
        ),
    ]:
        proc = _subprocess(["-m", "napari_consign", *argv])
        _, err = proc.communicate(timeout=TIMEOUT)
        lines = err.decode().strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and expected in lines[0], lines


@pytest.mark.slow
def test_scheduler_that_is_not_dask_fails_within_its_timeout(work):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts connections in the kernel, never answers
    port = silent.getsockname()[1]
    code = (
        "import sys; from napari_consign import parallel; parallel.CONNECT_TIMEOUT_S = 2; "
        "from napari_consign.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = [
        "evaluate",
        "--samples",
        str(work / "samples.npz"),
        "--splits",
        "1",
        "--quiet",
        "--scheduler",
        f"tcp://127.0.0.1:{port}",
    ]
    proc = _subprocess(["-c", code, *argv])
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        silent.close()
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "cannot connect" in lines[0], lines


# --------------------------------------------------------------------------- guarantees


def test_alpha_is_never_served_weaker_silently(work, capsys):
    refused(capsys, predict_argv(work, "--alpha", "0.0001"), "below the smallest level")
    consign = ["--bundle", str(work / "consign.npz")]
    refused(capsys, [*predict_argv(work, "--alpha", "0.005"), *consign], "weaker guarantee")
    assert not (work / "out").exists() or not list((work / "out").iterdir())
    assert cli.main(predict_argv(work, "--alpha", "0.015,0.0001", "--allow-weaker")) == 0
    err = capsys.readouterr().err
    assert "served at 0.01, a stronger guarantee" in err and "WEAKER" in err
    report = json.loads((work / "out" / "scan_bands.json").read_text())
    assert [r["alpha_used"] for r in report["bands"]] == [0.01, 0.01]
    assert all(r["file"].endswith("_alpha0.01.nii.gz") for r in report["bands"])


def test_calibration_identity_covers_settings_mode_and_ns(work, capsys):
    weights, sidecar = builtin_model_files()
    bare = work / "bare.pt"  # the same weights without their sidecar
    shutil.copy(weights, bare)
    probs = work / "probs.pt"
    shutil.copy(weights, probs)
    info = json.loads(sidecar.read_text())
    (work / "probs.json").write_text(json.dumps({**info, "output": "probabilities"}))
    for extra, expected in [
        (["--model", str(bare)], "other model settings"),
        (["--model", str(probs)], "other model settings"),
        (["--mode", "tta"], "sampling mode 'mc_dropout'"),
        (["--n-samples", "1"], "N_s = 10"),
    ]:
        refused(capsys, predict_argv(work, *extra), expected)


def _edit_bundle(src: Path, dst: Path, edit) -> Path:
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["__bundle__"]))
    header.pop("checksum", None)
    arrays["__bundle__"] = np.array(json.dumps(edit(header)))
    np.savez(dst, **arrays)
    return dst


def _table(h, f):
    h["state"]["table"] = [f(row) for row in h["state"]["table"]]
    return h


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda h: [h], "not a JSON object"),
        (lambda h: 3, "not a JSON object"),
        (lambda h: None, "not a JSON object"),
        (lambda h: {**h, "state": {**h["state"], "table": []}}, "table is empty"),
        (lambda h: _table(h, lambda r: [r[0], float("nan"), r[2]]), "NaN"),
        (lambda h: _table(h, lambda r: [r[0], 2.0, r[2]]), "must lie in [0, 1]"),
        (lambda h: _table(h, lambda r: [r[0], -1.0, r[2]]), "must lie in [0, 1]"),
        (lambda h: _table(h, lambda r: [r[0], r[2], r[1]]), "swapped"),
        (lambda h: {**h, "state": {**h["state"], "n_used": 3}}, "inconsistent"),
        (lambda h: {**h, "checksum": "0" * 64}, "checksum"),
    ],
)
def test_edited_bundles_are_refused(work, capsys, edit, expected):
    bad = _edit_bundle(work / "crc.npz", work / "crc.npz", edit)
    before = digest(work)
    refused(capsys, predict_argv(work), expected)
    assert digest(work) == before and bad.is_file()


def test_nan_predictor_weights_and_a_checksummed_bundle(work, capsys):
    src = bundled_bundle_path("coat")
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    key = next(k for k in arrays if k.startswith("array/"))
    arrays[key] = np.full_like(arrays[key], np.nan)
    np.savez(work / "coat.npz", **arrays)
    argv = predict_argv(work)
    argv[argv.index(str(work / "crc.npz"))] = str(work / "coat.npz")
    refused(capsys, argv, "checksum")  # the shipped bundle is checksummed: the edit is caught
    # re-signed with a matching checksum, NaN weights are still refused, by the state checks
    header = json.loads(str(arrays["__bundle__"]))
    weights = {k.removeprefix("array/"): v for k, v in arrays.items() if k.startswith("array/")}
    header["checksum"] = content_checksum(header, weights)
    arrays["__bundle__"] = np.array(json.dumps(header))
    np.savez(work / "coat.npz", **arrays)
    refused(capsys, argv, "not finite")
    # a bundle written now carries a checksum: flipping one array byte is caught
    assert cli.main(["calibrate", "--samples", str(work / "samples.npz"), "--model-id", "m",
                     "--out", str(work / "b"), "--quiet"]) == 0  # fmt: skip
    with np.load(work / "b" / "crc.npz") as z:
        header = json.loads(str(z["__bundle__"]))
    assert len(header["checksum"]) == 64


# --------------------------------------------------------------------------- geometry


def test_bad_geometry_and_voxels(work, capsys):
    zero = work / "zero.nii"
    write_scan(zero, np.ones((2, 8, 8)))
    raw = bytearray(zero.read_bytes())
    raw[80:84] = np.float32(0.0).tobytes()  # pixdim[1] = 0
    zero.write_bytes(bytes(raw))
    nan = write_scan(
        work / "nan.nii.gz", np.where(np.eye(32)[None] > 0, np.nan, 1.0) * [[[1]], [[1]]]
    )
    for scan, expected in [(zero, "pixdim"), (nan, "NaN or infinite")]:
        argv = predict_argv(work)
        argv[argv.index(str(work / "scan.nii.gz"))] = str(scan)
        refused(capsys, argv, expected)

    def cases(name, mask, **geo):
        folder = work / name
        folder.mkdir()
        shutil.copy(work / "scan.nii.gz", folder / "a.nii.gz")
        write_scan(folder / "a_mask.nii.gz", mask, **geo)
        return str(folder)

    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "scan_mask.nii.gz")))
    for folder, expected in [
        (cases("shifted", mask, origin=(500.0, 0.0, 0.0), dtype=np.uint8), "origin"),
        (cases("spaced", mask, spacing=(1.0, 1.0, 1.0), dtype=np.uint8), "spacing"),
        (cases("soft", mask * 0.3), "non-integer"),
    ]:
        refused(
            capsys, ["calibrate", "--cases", folder, "--out", str(work / "b"), "--quiet"], expected
        )
    assert not (work / "b").exists() or not list((work / "b").iterdir())


class _NaNOnRealSlices(torch.nn.Module):
    def forward(self, x):
        y = torch.cat([x, 1 - x], 1)
        return y * float("nan") if bool(x.amax() > 5) else y


class _RaisesOnRealSlices(torch.nn.Module):
    def forward(self, x):
        if x.shape[-1] != 64:
            raise RuntimeError("this model only takes 64 x 64")
        return torch.cat([x, 1 - x], 1)


@pytest.mark.parametrize(
    ("module", "expected"),
    [(_NaNOnRealSlices, "NaN or infinite probabilities"), (_RaisesOnRealSlices, "model failed")],
)
def test_models_failing_on_real_slices(work, capsys, module, expected):
    path = work / "m.pt"
    torch.jit.script(module()).save(str(path))
    out = work / "s.npz"
    argv = [
        "sample",
        "--scan",
        str(work / "scan.nii.gz"),
        "--out",
        str(out),
        "--model",
        str(path),
        "--mode",
        "tta",
        "--quiet",
    ]
    refused(capsys, argv, expected)
    assert not out.exists()


# --------------------------------------------------------------------------- tracebacks


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["evaluate", "--seed", "-1"], "must be 0 or more"),
        (["evaluate", "--input-size", "0"], "must be at least 1"),
        (["evaluate", "--n-samples", "-3"], "must be at least 1"),
        (["evaluate", "--splits", "0"], "must be at least 1"),
    ],
)
def test_bad_numbers_are_one_line(work, capsys, argv, expected):
    refused(capsys, [*argv, "--samples", str(work / "samples.npz")], expected)


def test_forged_and_odd_npz(work, capsys):
    huge = work / "huge.npz"
    np.savez(huge, samples=np.zeros((1, 1, 2, 2), np.float32), masks=np.zeros((1, 2, 2)))
    with zipfile.ZipFile(huge) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1, 2, 2), np.float32))
    header["shape"] = (10**6, 10, 1000, 1000)  # claims 40 TB
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    members["samples.npy"] = buf.getvalue() + b"\0" * 16
    with zipfile.ZipFile(huge, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    strings = work / "strings.npz"
    np.savez(strings, samples=np.array([["a"]]), masks=np.zeros((1, 2, 2)))
    for path, expected in [(huge, "claims shape"), (strings, "numbers are needed")]:
        refused(capsys, ["evaluate", "--samples", str(path)], expected)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a read-only tmpfs")
def test_read_only_output_folder(work, capsys):
    ro = work / "ro"
    ro.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount here")
    try:
        refused(
            capsys,
            ["evaluate", "--samples", str(work / "samples.npz"), "--json", str(ro / "r.json")],
            "not writable",
        )
        refused(capsys, predict_argv(work, "--out", str(ro / "x")), "Read-only")
    finally:
        subprocess.run(["umount", str(ro)], check=False)
