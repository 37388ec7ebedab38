"""Run a Plan on a backend: stage orchestration and statistics, shared by every backend.

A backend is a module with ``reduce(src, stage, stats, luts, k) -> Reduction`` and
``apply(src, stage, stats, luts, epilogue, out)``; see ``kernels/reference.py``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch

from fastaug.plan import Plan, Stage

BACKENDS = ("torch", "numba", "triton")
_MODULES = {"torch": "fastaug.kernels.reference", "numba": "fastaug.kernels.numba", "triton": "fastaug.kernels.triton"}


def _triton_usable(device: torch.device) -> bool:
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def resolve_backend(backend: str, device: torch.device) -> str:
    """``auto``: triton for CUDA tensors, numba for CPU tensors."""
    if backend == "auto":
        return "triton" if device.type == "cuda" else "numba"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {BACKENDS}, got {backend!r}")
    if backend == "numba" and device.type != "cpu":
        raise ValueError(f"backend='numba' runs on CPU tensors, got a tensor on {device}")
    if backend == "triton" and not _triton_usable(device):
        raise ValueError("backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter)")
    return backend


def load_backend(name: str) -> ModuleType:
    return importlib.import_module(_MODULES[name])


def equalize_luts(hist: torch.Tensor) -> torch.Tensor:
    """Equalization lookup tables [..., 256] from histograms [..., 256] (PIL/torchvision's rule)."""
    hist = hist.to(torch.int64)
    n = hist.sum(-1, keepdim=True)
    cum = hist.cumsum(-1)
    last = cum.argmax(-1, keepdim=True)  # first bin reaching the total: the last non-empty bin
    step = torch.div(n - hist.gather(-1, last), 255, rounding_mode="floor")
    lut = torch.div(cum[..., :-1] + torch.div(step, 2, rounding_mode="floor"), step.clamp(min=1), rounding_mode="floor")
    lut = torch.cat([torch.zeros_like(lut[..., :1]), lut.clamp(0, 255)], dim=-1)
    identity = torch.arange(256, device=hist.device).expand_as(lut)
    return torch.where(step != 0, lut, identity).to(torch.float32)


def _contrast_slots(stage: Stage) -> set[int]:
    return {k for k in stage.stat_slots if 2 in stage.codes_at(k)}


def stage_tables(stage: Stage, batch: int, channels: int, device: torch.device):
    k = stage.program.shape[1]
    stats = torch.zeros(batch, k, channels, 2, dtype=torch.float32, device=device)
    luts = torch.zeros(batch, k, channels, 256, dtype=torch.float32, device=device)
    return stats, luts


def run_stage_stats(backend: ModuleType, src: torch.Tensor, stage: Stage, channels: int):
    """Fill the statistics tables of a stage, slot by slot, in program order."""
    batch = src.shape[0]
    stats, luts = stage_tables(stage, batch, channels, src.device)
    h, w = stage.out_size or tuple(src.shape[-2:])
    contrast = _contrast_slots(stage)
    for k in sorted(stage.stat_slots):
        red = backend.reduce(src, stage, stats, luts, k)
        stats[:, k, :, 0] = red.minimum
        stats[:, k, :, 1] = red.maximum
        if k in contrast:
            # contrast reads the gray mean from channel 0's first entry; AUTOCONTRAST/EQUALIZE at this
            # slot are other samples, which read their own per-channel entries
            is_contrast = stage.program[:, k] == 2
            mean = (red.gray_sum / (h * w)).to(torch.float32)
            stats[:, k, 0, 0] = torch.where(is_contrast, mean, stats[:, k, 0, 0])
        luts[:, k] = equalize_luts(red.hist)
    return stats, luts


def execute(plan: Plan, x: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """Run every stage of the plan on ``x`` [B,C,H,W]; returns the output batch."""
    name = resolve_backend(backend, x.device)
    mod = load_backend(name)
    src = x
    batch = x.shape[0]
    channels = plan.channels
    for s, stage in enumerate(plan.stages):
        last = s == len(plan.stages) - 1
        stats, luts = run_stage_stats(mod, src, stage, channels)
        h, w = stage.out_size or tuple(src.shape[-2:])
        if last:
            ep = plan.epilogue
            fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
            out = torch.empty((batch, ep.out_channels, h, w), dtype=ep.out_dtype, device=x.device, memory_format=fmt)
            mod.apply(src, stage, stats, luts, ep, out)
        else:
            out = torch.empty((batch, channels, h, w), dtype=torch.float32, device=x.device)
            mod.apply(src, stage, stats, luts, None, out)
        src = out
    return src


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
