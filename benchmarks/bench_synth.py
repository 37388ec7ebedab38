"""`fastaug synth` throughput per output format, with the engine-only rates and the cores' PNG encode rate, one run.

Sources: ``--sources`` distinct 224x224 crops of scikit-learn's sample photos, written as PNG files (the decode is
part of the measured path). Policy: RandAugment(2, 9), bilinear. Rows, all in img/s:

- ``engine``: the policy alone on synth's first batch (outputs ``0 <= k < --batch``), a contiguous uint8
  [batch, 3, 224, 224] already in memory, one call on all the cores (best of 5: the classic figure; the median beside);
- ``engine_same_outputs``: the policy alone on exactly the outputs synth makes (``0 <= k < --count``, source ``k % n``,
  dataset index ``k``, epoch 0), sources already in memory as synth keeps them, in synth's batches (``--batch`` at most,
  evened out over the cores: ``fastaug.synth._batch_size``), each through synth's own engine step
  (``fastaug.synth._augment``: the same layout and copies): ``one_call`` one batch at a time on all the cores,
  ``side_by_side`` one batch per core at once, one thread each (how synth runs the engine): the engine's share of a
  synthesis, its ceiling;
- ``png_encode_1``: one thread encoding 224x224 PNGs (``--png-level``) with Pillow one after another;
  ``png_encode_cores``: one such thread per core at once (Pillow releases the GIL): the reference of the PNG goal;
  ``png_encode_fastaug_1`` / ``_cores``: the same with the encoder synth uses (``fastaug.imagefiles.encode``: Pillow's
  bytes, its row filtering done by fastaug), the most a PNG synthesis could write; ``png_vs_encode_cores`` (img/s) and
  ``png_vs_encode_cores_per_cpu_s`` (img per CPU second, less sensitive to other load) compare the synthesis with Pillow's;
- ``synth_<format>``: a whole ``fastaug.synth.synthesize`` run of ``--count`` outputs from the PNG sources into an
  empty folder (decode, augment, encode, write, manifest), one worker process.

The npy synthesis and the same-outputs engine rows run ``--repeat`` times, interleaved (a busy machine slows them
alike); the JSON keeps every value (img/s, and img per CPU second of the process: the work, which other load on the
machine disturbs less), the ratios per repetition and their medians.

    python -m benchmarks.bench_synth [--count 2000] [--formats png jpeg webp tar npy] [--repeat 3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import fastaug
from benchmarks.bench import cpu_isa, device_info
from fastaug import synth as S


def make_sources(folder: Path, n: int) -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    g = np.random.default_rng(0)
    crops = []
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = int(g.integers(0, p.shape[0] - 224)), int(g.integers(0, p.shape[1] - 224))
        crop = np.ascontiguousarray(p[y : y + 224, x : x + 224])
        label = folder / f"c{i % 4}"
        label.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(label / f"s{i:04d}.png")
        crops.append(crop)
    return crops


def engine_rate(policy, crops: list[np.ndarray], batch: int) -> tuple[float, float]:
    """The policy alone on synth's first batch (outputs ``0 <= k < batch``: source ``k % n``, dataset index ``k``, epoch
    0), a contiguous uint8 [batch, 3, 224, 224] already in memory, one call on all the cores, 5 times: (best, median)."""
    x = torch.from_numpy(np.stack([crops[k % len(crops)] for k in range(batch)])).permute(0, 3, 1, 2).contiguous()
    idx = torch.arange(batch)
    policy(x, indices=idx, epoch=0)  # compile / warm up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        policy(x, indices=idx, epoch=0)
        times.append(time.perf_counter() - t0)
    return batch / min(times), batch / float(np.median(times))


def same_outputs_rate(policy, crops: list[np.ndarray], count: int, batch: int, side_by_side: bool) -> tuple[float, float]:
    """The policy on the outputs ``0 <= k < count`` synth makes, sources in memory (decoded as synth keeps them), each
    batch through synth's own engine step (``fastaug.synth._augment``: the batch stacked, the engine, the outputs back
    to HxWxC): one batch at a time on all the cores, or one batch per core at once on one thread each (as
    ``fastaug.synth`` runs it). Returns (img/s, img per CPU second of the process: the work, less sensitive to other
    load on the machine)."""
    cores = os.cpu_count() or 1
    planar = [S._planar(c) for c in crops]
    job = S.Job([], "", count, policy, S.Options("npy"), batch=batch, backend="numba")
    batch = S._batch_size(batch, count, cores)  # synth's batches: evened out over its engine threads (one per core)

    def one(a: int) -> None:
        S._augment(job, [(k, planar[k % len(planar)], None) for k in range(a, min(a + batch, count))])

    threads = torch.get_num_threads()
    t0, c0 = time.perf_counter(), time.process_time()
    if side_by_side and cores > 1:
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(cores) as pool:
                list(pool.map(one, range(0, count, batch)))
        finally:
            torch.set_num_threads(threads)
    else:
        for a in range(0, count, batch):
            one(a)
    return count / (time.perf_counter() - t0), count / (time.process_time() - c0)


def augmented_outputs(policy, crops: list[np.ndarray], count: int, batch: int) -> list[np.ndarray]:
    """The engine's outputs ``0 <= k < count`` as synth makes them (source ``k % n``, dataset index ``k``, epoch 0)."""
    out = []
    for a in range(0, count, batch):
        ks = range(a, min(a + batch, count))
        x = torch.from_numpy(np.stack([crops[k % len(crops)] for k in ks])).permute(0, 3, 1, 2).contiguous()
        y = policy(x, indices=torch.tensor(list(ks)), epoch=0)
        out.extend(y.permute(0, 2, 3, 1).contiguous().numpy())
    return out


def png_encode_rate(images: list[np.ndarray], level: int, threads: int, per_thread: int = 60, encoder: str = "pillow",
                    cpu: dict | None = None) -> float:
    """PNG encode rate of ``images`` (the engine's augmented outputs: encode speed depends on the content), with Pillow or
    with synth's encoder (``fastaug.imagefiles.encode``: the same bytes); ``cpu["img_per_cpu_s"]``: the same per CPU
    second of the process (other load on the machine disturbs it less)."""
    from fastaug import imagefiles

    def encode(i: int) -> int:
        if encoder == "fastaug":
            return len(imagefiles.encode(images[i % len(images)], "png", level))
        buf = io.BytesIO()
        Image.fromarray(images[i % len(images)]).save(buf, format="PNG", compress_level=level)
        return len(buf.getvalue())

    for i in range(4):
        encode(i)
    t0, c0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(encode, range(per_thread * threads)))
    if cpu is not None:
        cpu["img_per_cpu_s"] = per_thread * threads / (time.process_time() - c0)
    return per_thread * threads / (time.perf_counter() - t0)


def warm_up(policy, crop: np.ndarray, level: int) -> None:
    """Compile (or load from numba's cache) synth's own kernels before any row is timed: its layout loops and its PNG
    filter (after an edit of their module numba compiles them again, ~1-2 s that would land in the first synth row)."""
    from fastaug import imagefiles

    job = S.Job([], "", 1, policy, S.Options("npy"), batch=1, backend="numba")
    S._augment(job, [(0, S._planar(crop), None)])
    imagefiles.encode(crop, "png", level)


def synth_rate(src: Path, out: Path, policy, fmt: str, count: int, batch: int, level: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    opts = S.Options(fmt, png_level=level, shard_size=1000)
    t0, c0 = time.perf_counter(), time.process_time()
    summary = S.synthesize(S.folder_sources(src), out, count, policy, {}, batch=batch, progress=False, options=opts)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    shutil.rmtree(out, ignore_errors=True)
    return {"img_per_s": count / seconds, "img_per_cpu_s": count / cpu, "seconds": seconds, "written": summary.written,
            "bytes_per_image": size / count}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000, help="outputs per format (default 2000)")
    ap.add_argument("--sources", type=int, default=64, help="distinct source images (default 64)")
    ap.add_argument("--batch", type=int, default=128, help="engine batch, synth's default (default 128)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the npy synthesis and the same-outputs engine rows (default 3)")
    ap.add_argument("--png-level", type=int, default=6, help="PNG compression for the png / tar rows and the encode rate (default 6)")
    ap.add_argument("--formats", nargs="+", default=["png", "jpeg", "webp", "tar", "npy"])
    ap.add_argument("--out", default="benchmarks/results", help="folder for synth-<machine>-<date>.json")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    policy = fastaug.RandAugment(num_ops=2, magnitude=9, interpolation="bilinear", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        crops = make_sources(src, args.sources)
        outputs = augmented_outputs(policy, crops, max(args.sources, 128), args.batch)  # what synth encodes, not the sources
        warm_up(policy, crops[0], args.png_level)
        encode_cpu: dict = {}  # Pillow's encode on every core, per CPU second
        result = {
            "machine": {"cpu": platform.processor() or platform.machine(), "cores": cores, "torch_threads": torch.get_num_threads()},
            "device": device_info(torch.device("cpu")), "cpu_isa": cpu_isa(),
            "date": time.strftime("%Y-%m-%d"),
            "settings": {"count": args.count, "sources": args.sources, "batch": args.batch, "size": [224, 224],
                         "png_level": args.png_level, "policy": "RandAugment(2, 9, bilinear)", "backend": "auto",
                         "repeat": args.repeat, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")},  # fmt: skip
            "engine_img_per_s": None,
            "png_encode_1_img_per_s": png_encode_rate(outputs, args.png_level, 1),
            "png_encode_cores_img_per_s": png_encode_rate(outputs, args.png_level, cores, cpu=encode_cpu),
            "png_encode_fastaug_1_img_per_s": png_encode_rate(outputs, args.png_level, 1, encoder="fastaug"),
            "png_encode_fastaug_cores_img_per_s": png_encode_rate(outputs, args.png_level, cores, encoder="fastaug"),
            "synth": {},
        }
        result["engine_img_per_s"], result["engine_median_img_per_s"] = engine_rate(policy, crops, args.batch)
        runs: dict[str, list] = {"one_call": [], "side_by_side": [], "npy": []}  # (img/s, img per CPU s)
        for fmt in args.formats:
            if fmt == "npy":  # interleaved with the engine on the same outputs
                for _ in range(args.repeat):
                    runs["one_call"].append(same_outputs_rate(policy, crops, args.count, args.batch, side_by_side=False))
                    runs["side_by_side"].append(same_outputs_rate(policy, crops, args.count, args.batch, side_by_side=True))
                    r = synth_rate(src, Path(tmp) / "out", policy, fmt, args.count, args.batch, args.png_level)
                    runs["npy"].append((r["img_per_s"], r["img_per_cpu_s"]))
                    print(f"engine on the same outputs: {runs['one_call'][-1][0]:.0f} img/s one call at a time, "
                          f"{runs['side_by_side'][-1][0]:.0f} side by side; synth npy {r['img_per_s']:.0f}", flush=True)  # fmt: skip
                r["img_per_s"], r["img_per_cpu_s"] = (float(np.median([v[i] for v in runs["npy"]])) for i in (0, 1))
                r["runs"] = runs["npy"]
                result["synth"][fmt] = r
                continue
            result["synth"][fmt] = synth_rate(src, Path(tmp) / "out", policy, fmt, args.count, args.batch, args.png_level)
            print(f"synth {fmt}: {result['synth'][fmt]['img_per_s']:.0f} img/s", flush=True)
    if runs["npy"]:
        ratios = [n[0] / e[0] for n, e in zip(runs["npy"], runs["side_by_side"])]
        work = [n[1] / e[1] for n, e in zip(runs["npy"], runs["side_by_side"])]
        result["engine_same_outputs"] = {
            f"{mode}_{unit}": float(np.median([v[i] for v in runs[mode]]))
            for mode in ("one_call", "side_by_side") for i, unit in enumerate(("img_per_s", "img_per_cpu_s"))
        }  # fmt: skip
        result["engine_same_outputs"]["runs"] = {"one_call": runs["one_call"], "side_by_side": runs["side_by_side"]}
        result["npy_vs_engine_side_by_side"] = {"median": float(np.median(ratios)), "runs": ratios,
                                                "cpu_median": float(np.median(work)), "cpu_runs": work}  # fmt: skip
        print(f"npy / engine side by side on the same outputs: median {np.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}); "
              f"per CPU second {np.median(work):.2f}")  # fmt: skip
    png = result["synth"].get("png")
    if png:
        result["png_vs_encode_cores"] = png["img_per_s"] / result["png_encode_cores_img_per_s"]
        result["png_encode_cores_img_per_cpu_s"] = encode_cpu["img_per_cpu_s"]
        result["png_vs_encode_cores_per_cpu_s"] = png["img_per_cpu_s"] / encode_cpu["img_per_cpu_s"]  # the work, less load-sensitive
        result["png_vs_fastaug_encode_cores"] = png["img_per_s"] / result["png_encode_fastaug_cores_img_per_s"]
    print(f"engine only (one call, best of 5 / median): {result['engine_img_per_s']:.0f} / {result['engine_median_img_per_s']:.0f} img/s; "
          f"PNG encode: "
          f"{result['png_encode_1_img_per_s']:.0f} img/s on one thread, {result['png_encode_cores_img_per_s']:.0f} on {cores} (Pillow); "
          f"{result['png_encode_fastaug_1_img_per_s']:.0f} / {result['png_encode_fastaug_cores_img_per_s']:.0f} (synth's)")  # fmt: skip
    Path(args.out).mkdir(parents=True, exist_ok=True)
    path = Path(args.out) / f"synth-{cores}c-{result['date']}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
