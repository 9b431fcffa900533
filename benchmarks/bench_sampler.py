"""Sampler speed and memory: a 2D slice and the 3D demo scan, small chunks against one batch.

    python benchmarks/bench_sampler.py                 # CPU (2 threads), and CUDA if present
    python benchmarks/bench_sampler.py --threads 1 --n-samples 20 --quick

Each configuration runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``)
is its own; the table shows the peak above the baseline after loading the model and data
(torch's CPU allocations included), the peak of Python-tracked allocations (``tracemalloc``:
numpy arrays the reducers keep) and, on CUDA, ``torch.cuda.max_memory_allocated``.
Uses the bundled model (MC dropout, N_s samples per slice). Nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def one(cfg: dict) -> dict:
    import numpy as np
    import torch

    from napari_consign._sample_data import read_scan, sample_data_path
    from napari_consign.models import KeepSamples, Moments, Sampler, load_builtin_model

    torch.set_num_threads(cfg["threads"])
    device = cfg["device"]
    model = load_builtin_model(device=device)
    vol, _ = read_scan(sample_data_path("demo_scan.nii.gz"))
    vol = vol.astype(np.float32)
    if cfg["case"].startswith("2D"):
        size = cfg["size"]
        z = vol.shape[0] // 2
        sl = vol[z]
        if size != sl.shape:  # a larger clinical-size slice: the demo slice resampled
            sl = torch.nn.functional.interpolate(
                torch.from_numpy(sl)[None, None], size=size, mode="bilinear"
            )[0, 0].numpy()
        data = sl[None]
    else:
        data = vol
    sampler = Sampler(
        model,
        n_samples=cfg["n_samples"],
        device=device,
        chunk_size=cfg["chunk"],
        half=cfg.get("half", False),
        seed=0,
    )
    sampler.run(data[:1], [Moments()])  # warm-up (kernel selection, allocator)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = _rss_mb()
    reducers = [Moments()] + ([KeepSamples()] if cfg.get("keep") else [])
    tracemalloc.start()
    reps = cfg.get("reps", 1)
    t0 = time.perf_counter()
    for _ in range(reps):
        sampler.run(data, reducers)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / reps
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n = data.shape[0] * sampler.n_samples
    out = {
        **cfg,
        "seconds": dt,
        "samples_per_s": n / dt,
        "rss_peak_delta_mb": _rss_mb() - base,
        "rss_peak_mb": _rss_mb(),
        "py_peak_mb": py_peak / 2**20,
        "chunk_used": sampler.chunk_size,
    }
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def configs(args) -> list[dict]:
    ns = args.n_samples
    out = []
    devices = [("cpu", args.threads)]
    try:
        import torch

        if torch.cuda.is_available():
            devices.append(("cuda", args.threads))
    except ImportError:
        pass
    for device, threads in devices:
        chunks = [1, 2, 4, ns] if device == "cpu" else [4, ns]
        for size in [(112, 96), (256, 256)]:
            for chunk in chunks:
                out.append(
                    {
                        "case": f"2D {size[0]}x{size[1]}",
                        "size": size,
                        "device": device,
                        "threads": threads,
                        "n_samples": ns,
                        "chunk": chunk,
                        "reps": 3 if size == (112, 96) else 1,
                    }
                )
        for chunk in [2, ns] if device == "cpu" else [ns]:
            if args.quick:
                break
            out.append(
                {
                    "case": "3D demo 80x112x96",
                    "device": device,
                    "threads": threads,
                    "n_samples": ns,
                    "chunk": chunk,
                }
            )
        if not args.quick:
            out.append(
                {
                    "case": "3D demo, keep samples",
                    "device": device,
                    "threads": threads,
                    "n_samples": ns,
                    "chunk": 2 if device == "cpu" else ns,
                    "keep": True,
                }
            )
        if device == "cuda":
            out.append(
                {
                    "case": "2D 256x256 half",
                    "size": (256, 256),
                    "device": device,
                    "threads": threads,
                    "n_samples": ns,
                    "chunk": ns,
                    "half": True,
                }
            )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-samples", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="2D cases only")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        cfg = json.loads(args.one)
        if "size" in cfg:
            cfg["size"] = tuple(cfg["size"])
        print(json.dumps(one(cfg)))
        return 0
    rows = []
    for cfg in configs(args):
        proc = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(cfg)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(
            f"... {r['case']} {r['device']} chunk {r['chunk']}: {r['seconds']:.2f} s",
            file=sys.stderr,
            flush=True,
        )
    head = (
        "| case | device | threads | N_s | chunk | seconds | samples/s | peak RSS above "
        "baseline (MB) | tracemalloc peak (MB) | CUDA peak (MB) |"
    )
    print(head)
    print("|" + "---|" * 10)
    for r in rows:
        cuda = f"{r['cuda_peak_mb']:.0f}" if "cuda_peak_mb" in r else "-"
        half = " fp16" if r.get("half") else ""
        print(
            f"| {r['case']} | {r['device']}{half} | {r['threads']} | {r['n_samples']} | "
            f"{r['chunk']} | {r['seconds']:.2f} | {r['samples_per_s']:.0f} | "
            f"{r['rss_peak_delta_mb']:.0f} | {r['py_peak_mb']:.1f} | {cuda} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
