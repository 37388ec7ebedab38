"""Each op alone (+ Normalize) on the numba backend, next to its arithmetic and memory limits.

``python -m benchmarks.per_op`` (``--isa both`` on an AVX-512 host also runs AVX2 code, as ``benchmarks.bench``):
B=64, 3x224x224 uint8 in, ImageNet-normalized float32 out, every op applied to every image with per-sample
magnitudes. Per op: img/s (median of ``--repeats``), and two limits on this machine:

- memory: one read of the uint8 input and one write of the float32 output per image (752,640 bytes) at the copy
  bandwidth measured in the same run (read + write bytes of a large ``Tensor.copy_``);
- arithmetic: the op's float operations per pixel (counted from the numba kernels, below: every +, -, *, /, sqrt,
  min, max, floor, compare-and-select and integer op counts as one, so the limit is optimistic where divisions
  and square roots dominate) times the pixels, at the peak rate of independent multiply-adds measured in the same
  run on all threads (no FMA: the kernels keep the reference's rounding, so they never contract).

The largest gap between img/s and the lower of the two limits is where the next speed-up is. Writes
``results/per-op-<device>-<date>[-avx2].json``; ``render(json)`` gives the README table.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import threading
import time

import numpy as np
import torch
from numba import njit

from benchmarks import bench

B, C, H, W = 64, 3, 224, 224
BYTES = C * H * W * (1 + 4)

# Float operations per pixel (3 channels) of each op's numba code path, counted from kernels/numba/fused.py.
# Normalize: uint8 -> float, the 1/255 scale, (v - mean) / std (4 per value); it is part of every row below.
OPS_PER_PIXEL = {
    "normalize": 12,
    "brightness": 12 + 12,  # mul, max, min, floor per value
    "contrast": 12 + 15 + 7,  # mul, add, max, min, floor per value; the statistics pass: gray (5) + floor + sum
    "saturation": 12 + 22,  # gray (5) + floor, then mul, add, max, min, floor per value
    "hue": 12 + 80,  # rgb -> hsv (5 divisions), shift, hsv -> rgb as selects, floor (see _hue_row)
    "posterize + solarize": 12 + 9 + 9,  # div, floor, mul; compare, subtract, select
    "affine (bilinear)": 12 + 64 + 45,  # coordinates, taps, weights (per pixel); unpack + blend + fill + rint per value
    "color jitter (4 ops)": 12 + 136 + 64,  # the four ops; the statistics pass runs the ops before contrast (~half)
    "gaussian blur 5x5": 12 + 66,  # separable: 5 + 5 taps (mul, add) and rint per value
    "gaussian noise": 12 + 180,  # per pair of values: two hashes, log / cos / sin series, sqrt; add, clamp
    "coarse dropout": 12,  # rectangles written in the epilogue
    "reference pipeline": 12 + 64 + 45 + 136 + 64 + 21,
    "blur-noise pipeline": 12 + 64 + 45 + 136 + 64 + 66 + 180,
}


def _steps(name: str):
    import fastaug

    one = {
        "normalize": [],
        "brightness": [fastaug.ColorJitter(brightness=0.4)],
        "contrast": [fastaug.ColorJitter(contrast=0.4)],
        "saturation": [fastaug.ColorJitter(saturation=0.4)],
        "hue": [fastaug.ColorJitter(hue=0.1)],
        "posterize + solarize": [fastaug.RandomPosterize(4, p=1.0), fastaug.RandomSolarize(128, p=1.0)],
        "affine (bilinear)": [fastaug.RandomAffine(30, translate=(0.1, 0.1), shear=10, interpolation="bilinear")],
        "color jitter (4 ops)": [fastaug.ColorJitter(0.4, 0.4, 0.4, 0.1)],
        "gaussian blur 5x5": [fastaug.GaussianBlur(5, (0.1, 2.0))],
        "gaussian noise": [fastaug.GaussianNoise(0.0, 0.05)],
        "coarse dropout": [fastaug.CoarseDropout((1, 4), (0.1, 0.2), (0.1, 0.2), fill=0, p=1.0)],
    }
    if name == "reference pipeline":
        return bench.fastaug_pipeline(torch.device("cpu"))
    if name == "blur-noise pipeline":
        return bench.fastaug_pipeline(torch.device("cpu"), pipeline="blur-noise-dropout")
    return fastaug.Compose([*one[name], fastaug.Normalize(list(bench.MEAN), list(bench.STD))], seed=0)


@njit(cache=True, nogil=True)
def _madd(acc, m, c, n):
    """``n`` rounds of ``acc = acc * m + c`` over a small array (two float ops per element, vectorised, in L1)."""
    for _ in range(n):
        for j in range(acc.shape[0]):
            acc[j] = acc[j] * m + c


def peak_flops(threads: int) -> float:
    """Float32 operations per second of :func:`_madd` on ``threads`` threads at once (best of 5, ~0.1 s each)."""
    m, c = np.float32(0.999), np.float32(0.001)
    _madd(np.ones(256, np.float32), m, c, 10)
    t0 = time.thread_time()
    _madd(np.ones(256, np.float32), m, c, 100000)
    n = max(1000, int(100000 * 0.1 / max(time.thread_time() - t0, 1e-6)))
    best = 0.0
    for _ in range(5):
        accs = [np.ones(256, np.float32) for _ in range(threads)]
        workers = [threading.Thread(target=_madd, args=(a, m, c, n)) for a in accs]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        best = max(best, 2 * 256 * n * threads / (time.perf_counter() - t0))
    return best


def run(names: list[str], repeats: int, warmup: int) -> dict:
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    bench.configure_threads(threads)
    x = torch.randint(0, 256, (B, C, H, W), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    bw = bench.copy_bandwidth(torch.device("cpu"))
    peak = peak_flops(threads)
    peak_one = peak_flops(1)  # the second thread's share: a VM's vCPUs may share one core's vector units
    rows = {}
    for name in names:
        aug = _steps(name)
        times = bench.time_call(lambda aug=aug: aug(x), torch.device("cpu"), warmup, repeats)
        med = statistics.median(times)
        arith = peak / (OPS_PER_PIXEL[name] * H * W)
        rows[name] = {"img_s": B / med, "ms_per_batch": 1e3 * med, "ops_per_pixel": OPS_PER_PIXEL[name],
                      "arithmetic_limit_img_s": arith, "memory_limit_img_s": bw / BYTES}  # fmt: skip
        print(f"  {name:24s} {B / med:8.0f} img/s   arithmetic limit {arith:8.0f}   memory limit {bw / BYTES:8.0f}")
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "device": bench.device_info(torch.device("cpu")),
        "cpu_isa": bench.cpu_isa(),
        "threads": threads,
        "batch": B, "size": H, "in": "uint8", "out": "float32 normalized",
        "copy_bandwidth_gb_s": bw / 1e9, "peak_gflops": peak / 1e9, "peak_gflops_one_thread": peak_one / 1e9, "repeats": repeats,
        "ops": rows,
    }  # fmt: skip


def _one(results: dict) -> str:
    one = results.get("peak_gflops_one_thread")
    return f" ({one:.0f} on one thread: {results['threads']} threads give x{results['peak_gflops'] / one:.2f})" if one else ""


def render(results: dict) -> str:
    """The README table of a results dict."""
    isa = results["cpu_isa"]
    code = ", ".join(isa.get("code_isa", [])) or "?"
    lines = [
        f"{results['device']['cpu']} ({results['threads']} threads), CPU {isa.get('llvm_cpu')}, numba code: {code}; "
        f"copy bandwidth {results['copy_bandwidth_gb_s']:.1f} GB/s, peak {results['peak_gflops']:.0f} GFLOP/s{_one(results)}; "
        f"{results['date'][:10]}",
        "",
        "| op (+ Normalize), B=64 224x224 | img/s | ops / pixel | arithmetic limit | memory limit | img/s / min(limits) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results["ops"].items():
        lim = min(r["arithmetic_limit_img_s"], r["memory_limit_img_s"])
        lines.append(f"| {name} | {r['img_s']:.0f} | {r['ops_per_pixel']} | {r['arithmetic_limit_img_s']:.0f} | "
                     f"{r['memory_limit_img_s']:.0f} | {r['img_s'] / lim:.0%} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.per_op", description=__doc__.split("\n")[0])
    p.add_argument("--ops", nargs="+", default=list(OPS_PER_PIXEL), choices=list(OPS_PER_PIXEL))
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--isa", default="auto", choices=("auto", "native", "avx2", "both"))
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    if not bench.run_isas("benchmarks.per_op", a.isa, argv):
        return
    results = run(a.ops, a.repeats, a.warmup)
    if not a.no_write:
        tag = bench.isa_tag(results["cpu_isa"])
        stem = f"per-op-{bench.device_slug(results['device'])}-{results['date'][:10]}" + (f"-{tag}" if tag else "")
        path = bench.RESULTS_DIR / f"{stem}.json"
        path.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {path}")
    print(render(results))


if __name__ == "__main__":
    main()
