"""Bytes of image data each call moves on the CUDA path, counted launch by launch from its Plan.

``python tests/cuda_bytes.py`` prints, per case of ``cuda_cases.CASES`` (B=8, 3x224x224 uint8 in), the image bytes per
image that the call's launches read and write, next to the compulsory bytes (the input read once, the output written
once). The launches are the engine's (checked: the kernel sequence a fake-CUDA call logs is the one counted), the
bytes per sample come from the same call's Plan compiled on the CPU for 256 samples (the same draws' bits): an
``apply_kernel`` reads each sample's source and writes its output; a ``reduce_kernel`` reads the source of the samples
with a statistics op in its round (the others exit at once); a ``fold_fill_kernel`` reads the source of the samples
whose op at its fold is SHARPNESS and writes their chain into the fold's buffer (``plan.Fold``). A sample's source is
the stage input, or after a folded SHARPNESS it ran, that fold's buffer (uint8 or float32). Each image-sized tensor
counts once per launch (a neighbourhood op's halo rows, read twice by adjacent tiles, and the small tables, parameters
and statistics are not counted). A count of what the Plan launches, not a measurement of DRAM traffic: caches can only
lower it."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cuda_cases  # noqa: E402

from fastaug.compiler import compile_plan  # noqa: E402
from fastaug.engine import stat_positions  # noqa: E402
from fastaug.plan import Op  # noqa: E402

_KERNELS = ("apply_kernel", "reduce_kernel", "fold_fill_kernel")


def _launches(plan, shape: tuple[int, ...], dtype: torch.dtype) -> list[tuple[str, float, float]]:
    """(kernel, bytes read, bytes written) per image of every image-touching launch of ``plan`` (for a batch of ``shape``
    and ``dtype``), in the engine's order."""
    batch, c, h, w = shape
    src_bytes, out = float(c * h * w * torch.empty((), dtype=dtype).element_size()), []
    for s, stage in enumerate(plan.stages):
        ho, wo = stage.out_size or (h, w)
        k_total = stage.program.shape[1]
        prog = stage.program
        found = stat_positions(stage) if k_total else torch.zeros(batch, 0, dtype=torch.bool)  # [B,K]
        folds = [f.position for f in stage.folds]
        buf_bytes = c * ho * wo * (1.0 if all(f.integral for f in stage.folds) else 4.0)
        sharp = {f: prog[:, f] == int(Op.SHARPNESS) for f in folds}

        def source(stop: int, folds=folds, sharp=sharp, buf_bytes=buf_bytes, src_bytes=src_bytes) -> torch.Tensor:
            """[B] bytes of each sample's source for its chain before ``stop``: its last fold's buffer, or the input."""
            last = torch.full((batch,), -1)
            for f in folds:
                last = torch.where(sharp[f] & (f < stop), f, last)
            return torch.where(last >= 0, buf_bytes, src_bytes)

        for p, (lo, hi, rounds) in enumerate(stage.parts()):
            inside = found[:, lo:hi]
            count = inside.cumsum(1)
            for r in range(rounds):
                hit = inside & (count == r + 1)
                stop = torch.where(hit.any(1), hit.int().argmax(1) + lo, k_total)
                read = sum(float(source(int(t))[b]) for b, t in enumerate(stop.tolist()) if t < k_total)
                out.append(("reduce_kernel", read / batch, 0.0))
            if p < len(folds):
                f = folds[p]
                rows = sharp[f]
                out.append(("fold_fill_kernel", float(source(f)[rows].sum()) / batch, float(rows.sum()) * buf_bytes / batch))
        last = s == len(plan.stages) - 1
        out_item = torch.empty((), dtype=plan.epilogue.out_dtype).element_size() if last else (1 if stage.integral else 4)
        out_bytes = (plan.epilogue.out_channels if last else c) * ho * wo * out_item
        out.append(("apply_kernel", float(source(k_total).mean()), float(out_bytes)))
        src_bytes = float(out_bytes)
    return out


def count(name: str) -> dict:
    """Per image: bytes read and written by the launches of one call of case ``name``, and the compulsory bytes; the
    launch sequence is checked against the one a fake-CUDA call of the case logs."""
    n = 256
    pipe = cuda_cases.CASES[name]()
    x = torch.zeros(n, 3, cuda_cases.H, cuda_cases.W, dtype=torch.uint8)
    with cuda_cases.spy_plans() as plans:  # every Plan the call runs, in order (ElasticTransform's field: in its draw)
        calls = pipe.draw(x, torch.arange(n), 1)
    plans.append((compile_plan(calls, tuple(x.shape), x.dtype, x.device), tuple(x.shape), x.dtype))
    counted = [launch for plan, shape, dtype in plans for launch in _launches(plan, shape, dtype)]
    log, y = cuda_cases.run_case(name)
    logged = [k for k in log.launches if k in _KERNELS]
    if logged != [k for k, _, _ in counted]:
        raise RuntimeError(f"{name}: the call launched {logged}, the count expects {[k for k, _, _ in counted]}")
    read, written = sum(r for _, r, _ in counted), sum(w for _, _, w in counted)
    compulsory = 3 * cuda_cases.H * cuda_cases.W + y.shape[1:].numel() * y.element_size()
    names = {"apply_kernel": "apply", "reduce_kernel": "reduce", "fold_fill_kernel": "fold fill"}
    passes = [f"{names[k]} {r / 1e6:.2f} MB in" + (f", {w / 1e6:.2f} MB out" if w else "") for k, r, w in counted]
    return {"read": read, "written": written, "compulsory": compulsory, "ratio": (read + written) / compulsory, "launches": passes}


def table() -> str:
    rows = ["| call (3x224x224 uint8 in) | read / image | written / image | compulsory / image | moved / compulsory | image passes |",
            "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for name in cuda_cases.CASES:
        c = count(name)
        mb = lambda v: f"{v / 1e6:.2f} MB"  # noqa: E731
        rows.append(f"| {name} | {mb(c['read'])} | {mb(c['written'])} | {mb(c['compulsory'])} | {c['ratio']:.2f}x | "
                    f"{'; '.join(c['launches'])} |")  # fmt: skip
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
