"""Forward + backward throughput of one fused pipeline on CPU (numba backend) vs forward alone, and vs
kornia's autograd on the same pipeline.

Pipeline (per-sample magnitudes, all requiring grad, and the image): brightness, contrast,
saturation, rotation + scale about the centre (bilinear, zero padding), normalize.
Each round times forward without grad, forward with grad and that forward's backward alone; medians over rounds,
ratios paired per round. Run: ``python benchmarks/bench_autograd.py [--batch 64 --sizes 128 224 --reps 15]``; writes
``benchmarks/results/autograd.json``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import statistics
import time
from pathlib import Path

import numba
import torch

import fastaug.functional as F
from fastaug.ops.calls import ColorCall, NormalizeCall
from fastaug.plan import Op

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _mags(b: int, grad: bool):
    g = torch.Generator().manual_seed(0)

    def u(lo, hi):
        return (torch.rand(b, generator=g) * (hi - lo) + lo).requires_grad_(grad)

    return u(0.8, 1.2), u(0.8, 1.2), u(0.7, 1.3), u(-20.0, 20.0), u(0.9, 1.1)


def fastaug_pipeline(x, br, co, sa, angle, scale, backend="numba"):
    b, c, h, w = x.shape
    cv = F.Canvas(b, c, h, w, x.device)
    zeros = torch.zeros(b, 2)
    calls = [
        ColorCall(name="adjust_brightness", code=int(Op.BRIGHTNESS), params=torch.stack([br, 0 * br, 0 * br], 1)),
        ColorCall(name="adjust_contrast", code=int(Op.CONTRAST), params=torch.stack([co, 0 * co, 0 * co], 1)),
        ColorCall(name="adjust_saturation", code=int(Op.SATURATION), params=torch.stack([sa, 0 * sa, 0 * sa], 1)),
        F.affine_call(cv, angle, zeros, scale, zeros, "bilinear"),
        NormalizeCall(name="normalize", mean=torch.tensor(MEAN), std=torch.tensor(STD)),
    ]
    return F.run_calls(x, calls, backend)


def kornia_pipeline(x, br, co, sa, angle, scale):
    import kornia

    b, _, h, w = x.shape
    y = (x * br.view(-1, 1, 1, 1)).clamp(0, 1)
    y = kornia.enhance.adjust_contrast_with_mean_subtraction(y, co)
    y = kornia.enhance.adjust_saturation(y, sa)
    center = torch.tensor([[(w - 1) / 2, (h - 1) / 2]]).expand(b, 2)
    m = kornia.geometry.transform.get_rotation_matrix2d(center, angle, scale.view(-1, 1).expand(b, 2))
    y = kornia.geometry.transform.warp_affine(y, m, (h, w), mode="bilinear", padding_mode="zeros", align_corners=True)
    return kornia.enhance.normalize(y, torch.tensor(MEAN), torch.tensor(STD))


def _stats(xs: list[float]) -> dict:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "q1": q[0], "q3": q[2]}


def measure(pipe, x: torch.Tensor, reps: int) -> dict:
    """``reps`` rounds, each timing in turn: forward without grad, forward with grad (building the graph), and
    the backward of that forward alone. Medians and quartiles over rounds; ratios are paired per round."""
    b = x.shape[0]
    fwd, fwd_g, bwd, ratio = [], [], [], []

    def one_round() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        with torch.no_grad():
            pipe(x, *_mags(b, False))
        t1 = time.perf_counter()
        xg = x.detach().requires_grad_(True)
        y = pipe(xg, *_mags(b, True)).sum()
        t2 = time.perf_counter()
        y.backward()
        t3 = time.perf_counter()
        return t1 - t0, t2 - t1, t3 - t2

    one_round()  # warm-up (compiles)
    for _ in range(reps):
        f, fg, bw = one_round()
        fwd.append(f)
        fwd_g.append(fg)
        bwd.append(bw)
        ratio.append(bw / f)
    return {
        "forward_s": _stats(fwd),
        "forward_grad_s": _stats(fwd_g),
        "backward_s": _stats(bwd),
        "forward_backward_s": _stats([a + c for a, c in zip(fwd_g, bwd, strict=True)]),
        "backward_over_forward": _stats(ratio),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 224])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "autograd.json"))
    args = ap.parse_args()
    res = {
        "pipeline": "brightness, contrast, saturation, rotation+scale (bilinear, zeros), normalize; per-sample magnitudes",
        "grads": "the image and every magnitude",
        "threads": torch.get_num_threads(),  # the numba kernels run on as many Python threads
        "versions": {"torch": torch.__version__, "numba": numba.__version__, "kornia": _version("kornia")},
        "load_average": list(os.getloadavg()),
        "runs": [],
    }
    for size in args.sizes:
        x = torch.rand(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
        fa, ko = measure(fastaug_pipeline, x, args.reps), measure(kornia_pipeline, x, args.reps)
        run = {"shape": list(x.shape), "fastaug_numba": fa, "kornia": ko}
        run["ratios"] = {
            "fastaug_backward_over_forward": fa["backward_over_forward"]["median"],
            "kornia_backward_over_forward": ko["backward_over_forward"]["median"],
            "kornia_over_fastaug_fwd_bwd": ko["forward_backward_s"]["median"] / fa["forward_backward_s"]["median"],
            "kornia_over_fastaug_forward": ko["forward_s"]["median"] / fa["forward_s"]["median"],
        }
        res["runs"].append(run)
        print(f"B={args.batch} {size}x{size}")
        for name, r in (("fastaug_numba", fa), ("kornia", ko)):
            f, fb, bw = r["forward_s"]["median"], r["forward_backward_s"]["median"], r["backward_s"]["median"]
            print(f"  {name:14s} forward {f * 1e3:7.1f} ms ({args.batch / f:6.0f} img/s)   forward+backward {fb * 1e3:7.1f} ms "
                  f"({args.batch / fb:6.0f} img/s)   backward {bw * 1e3:7.1f} ms")  # fmt: skip
        for k, v in run["ratios"].items():
            print(f"  {k:34s} {v:6.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
