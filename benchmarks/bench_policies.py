"""RandAugment(num_ops=2, magnitude=9) side by side, in one run on one device (CPU):

* fastaug: ``fastaug.RandAugment(2, 9)`` on the uint8 batch, numba backend (per-sample ops and signs,
  one Plan: a geometry pass and one pass per op slot);
* torchvision v2: ``RandAugment(2, 9)`` called on each uint8 image in a Python loop (per-sample);
* kornia: ``kornia.augmentation.auto.RandAugment(n=2, m=9)`` on the batch (uint8 -> float / 255 included;
  kornia draws its sub-policies once per batch, magnitudes' signs per sample).

Usage: ``python -m benchmarks.bench_policies [--batch 64] [--size 224] [--repeats 7] [--threads N]``.
Prints img/s (median over repeats, after a warm-up; the peers take turns within each repeat) and the
ratio of fastaug to each peer. Not a test. On a shared machine, multi-threaded torch code (torchvision,
kornia) suffers most from a busy neighbour (each op's thread team waits for its slowest thread):
``--threads 1`` gives steadier numbers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.bench import RESULTS_DIR, device_info, device_slug, import_torchvision, versions


def peers(x: torch.Tensor) -> dict[str, Callable[[int], object]]:
    """name -> run(repeat) on the uint8 batch ``x``."""
    import fastaug

    aug = fastaug.RandAugment(num_ops=2, magnitude=9)
    idx = torch.arange(x.shape[0])
    out: dict[str, Callable[[int], object]] = {
        "fastaug (numba)": lambda r: aug(x, indices=idx, epoch=r, backend="numba"),
    }
    try:
        import_torchvision()
        import torchvision.transforms.v2 as T
    except ImportError:
        T = None
    if T is not None:
        tv = T.RandAugment(num_ops=2, magnitude=9)
        out["torchvision v2 (per image)"] = lambda r: torch.stack([tv(img) for img in x])
    try:
        from kornia.augmentation.auto import RandAugment as KorniaRandAugment

        ka = KorniaRandAugment(n=2, m=9)
        out["kornia (batch)"] = lambda r: ka(x.float() / 255.0)
    except ImportError:
        pass
    return out


def measure(runs: dict[str, Callable[[int], object]], repeats: int) -> dict[str, float]:
    """Median seconds per batch of each peer. Peers take turns within every repeat, so that a busy
    neighbour on a shared machine slows them alike."""
    for run in runs.values():
        run(-1)  # warm-up (numba JIT, caches)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run(r)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch and numba threads (default: all cores)")
    p.add_argument("--no-write", action="store_true", help="print only (default: also write benchmarks/results/policies-*.json)")
    a = p.parse_args(argv)
    if a.threads is not None:
        torch.set_num_threads(a.threads)  # the numba kernels run on torch's thread count too
    torch.manual_seed(0)
    x = torch.randint(0, 256, (a.batch, 3, a.size, a.size), dtype=torch.uint8)
    print(f"RandAugment(2, 9), {a.batch}x3x{a.size}x{a.size} uint8, CPU, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} cores, median of {a.repeats}")  # fmt: skip
    load = os.getloadavg()[0]
    rates = {name: a.batch / sec for name, sec in measure(peers(x), a.repeats).items()}
    for name, rate in rates.items():
        print(f"  {name:28s} {rate:9.1f} img/s")
    ours = rates["fastaug (numba)"]
    for name, rate in rates.items():
        if name != "fastaug (numba)":
            print(f"  fastaug / {name}: {ours / rate:.2f}x")
    after = os.getloadavg()[0]
    print(f"  load average (1 min) before / after: {load:.2f} / {after:.2f}")
    results = {
        "benchmark": "RandAugment(2, 9)", "date": datetime.date.today().isoformat(), "device": device_info(torch.device("cpu")),
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "shape": [a.batch, 3, a.size, a.size],
        "repeats": a.repeats, "img_s": rates, "fastaug_over": {n: ours / r for n, r in rates.items() if n != "fastaug (numba)"},
        "load_avg_before_after": [load, after], "versions": versions(),
    }  # fmt: skip
    if not a.no_write:
        path = RESULTS_DIR / f"policies-{device_slug(results['device'])}-{results['date']}.json"
        path.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {path}")
    return rates


if __name__ == "__main__":
    main()
