"""Forward + backward throughput of one fused pipeline on CPU (numba backend) vs forward alone, and vs
kornia's autograd on the same pipeline.

Pipeline (per-sample magnitudes, all requiring grad, and the image): brightness, contrast,
saturation, rotation + scale about the centre (bilinear, zero padding), normalize.
Run: ``python benchmarks/bench_autograd.py [--batch 64 --size 128 --reps 5]``; writes
``benchmarks/results/autograd.json``.
"""

from __future__ import annotations

import argparse
import json
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


def _time(fn, reps: int) -> float:
    fn()  # warm-up (compiles)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure(pipe, x: torch.Tensor, reps: int) -> dict:
    b = x.shape[0]

    def fwd():
        with torch.no_grad():
            pipe(x, *_mags(b, False))

    def fwd_grad():
        return pipe(x.requires_grad_(True), *_mags(b, True))

    def fwd_bwd():
        xg = x.detach().requires_grad_(True)
        mags = _mags(b, True)
        pipe(xg, *mags).sum().backward()

    t_f, t_fg, t_fb = _time(fwd, reps), _time(fwd_grad, reps), _time(fwd_bwd, reps)
    x.requires_grad_(False)
    return {"forward_s": t_f, "forward_grad_s": t_fg, "forward_backward_s": t_fb, "backward_s": t_fb - t_fg}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "autograd.json"))
    args = ap.parse_args()
    x = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    res = {
        "shape": list(x.shape),
        "threads": {"torch": torch.get_num_threads(), "numba": numba.get_num_threads()},
        "fastaug_numba": measure(fastaug_pipeline, x, args.reps),
        "kornia": measure(kornia_pipeline, x, args.reps),
    }
    fa, ko = res["fastaug_numba"], res["kornia"]
    res["ratios"] = {
        "fastaug_backward_over_forward": fa["backward_s"] / fa["forward_s"],
        "fastaug_fwd_bwd_over_forward": fa["forward_backward_s"] / fa["forward_s"],
        "kornia_over_fastaug_fwd_bwd": ko["forward_backward_s"] / fa["forward_backward_s"],
        "kornia_over_fastaug_forward": ko["forward_s"] / fa["forward_s"],
    }
    imgs = args.batch
    for name in ("fastaug_numba", "kornia"):
        r = res[name]
        print(f"{name:14s} forward {r['forward_s'] * 1e3:8.1f} ms ({imgs / r['forward_s']:7.0f} img/s)   "
              f"forward+backward {r['forward_backward_s'] * 1e3:8.1f} ms ({imgs / r['forward_backward_s']:7.0f} img/s)   "
              f"backward {r['backward_s'] * 1e3:8.1f} ms")  # fmt: skip
    for k, v in res["ratios"].items():
        print(f"{k:34s} {v:6.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
