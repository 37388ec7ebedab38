"""Bytes of image data each call moves on the CUDA path, counted from its Triton launches on fake CUDA tensors.

``python tests/cuda_bytes.py`` prints, per case of ``cuda_cases.CASES`` (B=8, 3x224x224 uint8 in), the image bytes per
image that the call's launches read and write, next to the compulsory bytes (the input read once, the output
written once). Counted from the launches' arguments: an ``apply_kernel`` reads its ``src`` and writes its ``out``, a
``reduce_kernel`` reads its ``src`` for the samples that have a statistics op in its round (the others exit at once:
the share is taken from the same call's Plan compiled on the CPU for 256 samples, whose draws are the same bits);
each image-sized tensor counts once per launch (a neighbourhood op's halo rows, read twice by adjacent tiles, and the
small tables, parameters and statistics are not counted). A count of what the Plan launches, not a measurement of
DRAM traffic: caches can only lower it."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cuda_cases  # noqa: E402
from fake_cuda import fake_cuda  # noqa: E402
from fastaug.kernels.triton import fused as triton_fused  # noqa: E402

from fastaug.compiler import compile_plan  # noqa: E402
from fastaug.engine import stat_positions  # noqa: E402


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def round_shares(pipe, n: int = 256) -> list[float]:
    """Per reduction round of the call's Plan, in launch order: the share of samples that read the image."""
    x = torch.zeros(n, 3, cuda_cases.H, cuda_cases.W, dtype=torch.uint8)
    plan = compile_plan(pipe.draw(x, torch.arange(n), 1), tuple(x.shape), x.dtype, x.device)
    shares = []
    for stage in (s for s in plan.stages if s.stat_slots):
        found = stat_positions(stage).sum(1)
        shares += [float((found > r).float().mean()) for r in range(stage.rounds())]
    return shares


def count(name: str) -> dict:
    """Per image: bytes read and written by the launches of one call of case ``name`` (its second call, after the
    first built the cached constants), and the compulsory bytes."""
    B, H, W = cuda_cases.B, cuda_cases.H, cuda_cases.W
    pipe = cuda_cases.CASES[name]()
    shares = round_shares(pipe)
    moved = {"read": 0.0, "written": 0, "launches": [], "rounds": 0}
    with fake_cuda() as log:
        intercept = triton_fused.launch

        def record(spec) -> None:
            intercept(spec)
            if spec.kernel == "reduce_kernel":
                share = shares[moved["rounds"]] if moved["rounds"] < len(shares) else 1.0
                moved["rounds"] += 1
                moved["read"] += share * _nbytes(spec.args["src"])
                moved["launches"].append(f"reduce ({share:.0%} of the samples read)")
            if spec.kernel == "apply_kernel":
                moved["read"] += _nbytes(spec.args["src"])
                moved["launches"].append(f"apply {str(spec.args['src'].dtype)[6:]} in")
            if spec.kernel == "apply_kernel":
                moved["written"] += _nbytes(spec.args["out"])
                moved["launches"][-1] += f", {str(spec.args['out'].dtype)[6:]} out"

        triton_fused.launch = record
        idx = torch.arange(B, device="cuda")
        for epoch in range(2):
            x = torch.empty(B, 3, H, W, dtype=torch.uint8, device="cuda")
            moved.update(read=0.0, written=0, launches=[], rounds=0)
            log.reset()
            out = pipe(x, indices=idx, epoch=epoch)
    if moved["rounds"] != len(shares):
        raise RuntimeError(f"{name}: {moved['rounds']} reduce launches, the Plan has {len(shares)} rounds")
    compulsory = _nbytes(x) + _nbytes(out)
    return {"read": moved["read"] / B, "written": moved["written"] / B, "compulsory": compulsory / B,
            "ratio": (moved["read"] + moved["written"]) / compulsory, "launches": moved["launches"]}  # fmt: skip


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
