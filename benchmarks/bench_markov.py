"""MarkovPolicy(length=3) + Normalize next to RandAugment + Normalize, in one run (CPU, numba backend).

The policies take turns within every repeat (a busy neighbour slows them alike); img/s is the median over repeats
after a warm-up. RandAugment(3, 9) runs as many op slots as the chain of length 3 (RandAugment(2, 9) is the usual
setting). Usage: ``python -m benchmarks.bench_markov [--batch 64] [--size 224] [--repeats 9]``; writes
``benchmarks/results/markov-<device>-<date>[-avx2].json`` (with the CPU's ISA; ``--isa`` as ``benchmarks.bench``)
unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import datetime
import json

import torch

from benchmarks.bench import MEAN, RESULTS_DIR, STD, cpu_isa, device_info, device_slug, isa_tag, run_isas, versions
from benchmarks.bench_policies import measure


def pipelines() -> dict:
    import fastaug

    norm = fastaug.Normalize(list(MEAN), list(STD))
    return {
        "MarkovPolicy(length=3) + Normalize": fastaug.Compose([fastaug.MarkovPolicy.from_autoaugment(length=3), norm]),
        "RandAugment(2, 9) + Normalize": fastaug.Compose([fastaug.RandAugment(2, 9), norm]),
        "RandAugment(3, 9) + Normalize": fastaug.Compose([fastaug.RandAugment(3, 9), norm]),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--isa", default="auto", choices=("auto", "native", "avx2", "both"), help="as benchmarks.bench: auto runs "
                   "AVX2 code too on an AVX-512 host")  # fmt: skip
    a = p.parse_args(argv)
    if not run_isas("benchmarks.bench_markov", a.isa, argv):
        return {}
    x = torch.randint(0, 256, (a.batch, 3, a.size, a.size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    idx = torch.arange(a.batch)
    runs = {name: (lambda r, aug=aug: aug(x, indices=idx, epoch=r + 1, backend="numba")) for name, aug in pipelines().items()}
    rates = {name: a.batch / seconds for name, seconds in measure(runs, a.repeats).items()}  # turns within every repeat
    first = next(iter(rates))
    print(f"code ISA: {isa_tag(cpu_isa()) or 'native'}")
    for name, rate in rates.items():
        print(f"{name:40s} {rate:8.0f} img/s   MarkovPolicy / this: {rates[first] / rate:.2f}x")
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": device_info(torch.device("cpu")),
              "cpu_isa": cpu_isa(), "versions": versions(), "batch": a.batch, "size": a.size, "repeats": a.repeats,
              "img_s": rates}  # fmt: skip
    if not a.no_write:
        tag = isa_tag(result["cpu_isa"])
        path = RESULTS_DIR / f"markov-{device_slug(result['device'])}-{result['date'][:10]}{'-' + tag if tag else ''}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
