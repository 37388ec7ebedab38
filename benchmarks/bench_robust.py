"""Boundary-search throughput: fastaug.robust's batched search vs a per-image loop calling the same model, one run.

The work is the same in every row: for each op, intensity step and sample, augment the sample at that intensity and
run the model on it (samples x steps pairs per op). ``batched``: ``Analyzer.search_boundaries`` (pairs of one op in
batches of ``--batch`` through one Plan and one model call). ``per-image loop``: one pair at a time (the same ops on a
batch of one, the model on a batch of one), the way tools that call ``predict`` per image run. ``per-file loop``:
as the per-image loop, but the model reads each image from a PNG file (``fastaug.robust.per_file``), on a subset.
The per-image curves are checked equal to the batched ones. The model: fastaug.search.child's CNN on digits (32x32,
1 channel; weights untrained: the cost does not depend on them). Usage: ``python -m benchmarks.bench_robust
[--samples 128] [--step 0.1] [--batch 256]``; writes ``benchmarks/results/robust-<device>-<date>.json`` unless
``--no-write``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import torch

from benchmarks.bench import RESULTS_DIR, cpu_isa, device_info, device_slug, versions
from fastaug.compose import Compose
from fastaug.robust import Analyzer, RobustAugment, per_file
from fastaug.robust import boundaries as B
from fastaug.search import datasets
from fastaug.search.child import default_model

OPS = ("brighten", "darken", "rotate", "gaussian_blur", "gaussian_noise", "crop", "elastic", "coarse_dropout")


def model(seed: int = 0):
    torch.manual_seed(seed)
    net = default_model(1, 32, 10).eval()

    def predict(batch):
        with torch.no_grad():
            return net(batch.float() / 255.0).argmax(1)

    return predict


def per_image_curves(predict, x, y, ops, ts, seed: int) -> dict:
    """The same curves, one (sample, step) pair at a time; the pipeline built once per op (as the batched path builds
    one per batch), only its 1x1 intensity set per pair."""
    out = {}
    for op in ops:
        robust = RobustAugment([op], torch.zeros(1, 1, dtype=torch.float64))
        aug = Compose([robust], seed=seed)
        mean = []
        for t in ts:
            robust.intensity.fill_(float(t))
            wrong = 0
            for i in range(x.shape[0]):
                img = aug(x[i : i + 1], indices=torch.tensor([i]))
                wrong += int(predict(img)[0] != y[i])
            mean.append(wrong / x.shape[0])
        out[op] = mean
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=128)
    p.add_argument("--step", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--file-samples", type=int, default=16, help="samples of the per-file loop (default 16)")
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args(argv)
    xs, ys = datasets.packaged("digits")
    x, y = xs[: a.samples], ys[: a.samples]
    predict = model()
    ts = B.intensities(a.step)
    pairs = len(OPS) * x.shape[0] * len(ts)
    # warm-up: compile every op's kernels once
    Analyzer(predict, ops=OPS, progress=False).search_boundaries(x[:4], y[:4], step=0.5)
    per_image_curves(predict, x[:1], y[:1], OPS, [0.5], 0)

    t0 = time.perf_counter()
    batched = Analyzer(predict, ops=OPS, batch_size=a.batch, progress=False).search_boundaries(x, y, step=a.step)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = per_image_curves(predict, x, y, OPS, ts, 0)
    t_loop = time.perf_counter() - t0
    same = all(loop[op] == batched[op].mean_diff_error for op in OPS)
    xf, yf = x[: a.file_samples], y[: a.file_samples]
    t0 = time.perf_counter()
    per_image_curves(per_file(lambda path: int(predict(_read(path))[0])), xf, yf, OPS, ts, 0)
    t_file = time.perf_counter() - t0
    file_pairs = len(OPS) * xf.shape[0] * len(ts)
    rates = {"batched (fastaug.robust)": pairs / t_batched, "per-image loop (same model)": pairs / t_loop,
             "per-file loop (PNG per image)": file_pairs / t_file}  # fmt: skip
    first = rates["batched (fastaug.robust)"]
    print(f"{len(OPS)} ops x {x.shape[0]} samples x {len(ts)} steps = {pairs} pairs; curves equal: {same}")
    for name, rate in rates.items():
        print(f"{name:32s} {rate:9.0f} pairs/s   batched / this: {first / rate:.1f}x")
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": device_info(torch.device("cpu")),
              "cpu_isa": cpu_isa(), "versions": versions(), "torch_threads": torch.get_num_threads(), "ops": list(OPS),
              "samples": x.shape[0], "steps": len(ts), "batch": a.batch, "file_samples": xf.shape[0], "pairs_per_s": rates,
              "ratio_batched_vs_per_image": first / rates["per-image loop (same model)"],
              "ratio_batched_vs_per_file": first / rates["per-file loop (PNG per image)"], "curves_equal": same}  # fmt: skip
    if not a.no_write:
        path = RESULTS_DIR / f"robust-{device_slug(result['device'])}-{result['date'][:10]}.json"
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {path}")
    return result


def _read(path: str) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im)
    return torch.from_numpy(a.copy()).view(1, 1, *a.shape)


if __name__ == "__main__":
    main()
