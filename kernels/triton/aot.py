"""Ahead-of-time compilation of the Triton backend's kernels (no GPU needed) and ptxas reports.

:func:`compile_all` compiles every kernel of the backend for a ``GPUTarget`` with the signatures,
specialisations and constexprs that the runtime launches of a set of representative stages would get
(ints equal to 1 become constants, 16-divisible ints and 16-byte aligned pointers get divisibility
hints, as Triton's JIT does). :func:`ptxas_info` runs the ptxas shipped with Triton on the PTX.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

import torch
import triton
from triton.backends.compiler import GPUTarget

from fastaug.plan import Epilogue, Fold, Geometry, Op, Stage

from . import geometry, tables
from .fused import (
    Launch,
    fold_buffers,
    kernel_module,
    prepare_apply,
    prepare_fold_fill,
    prepare_hash32,
    prepare_hash32_table,
    prepare_reduce,
)

_PTR_TYPES = {
    torch.bool: "*i1",
    torch.uint8: "*u8",
    torch.float16: "*fp16",
    torch.bfloat16: "*bf16",
    torch.float32: "*fp32",
    torch.float64: "*fp64",
    torch.int32: "*i32",
    torch.int64: "*i64",
}

PER_CHANNEL_CODES = (0, 1, 2, 5, 8, 9, 10, 11, 12, 13, 14)
ALL_CODES = tuple(int(o) for o in Op)
#: kernels that run on every batch in typical pipelines: they must not spill
HOT = ("apply_u8_fp16_norm", "apply_u8_resize_fp16_cl", "apply_u8_affine_nearest_u8", "apply_u8_randaug_fp16",
       "apply_u8_jitter_fp16", "apply_f32_sharpness", "apply_u8_blur5_u8",
       "apply_u8_conv5_u8", "apply_u8_affine_noise_fp16", "apply_u8_elastic_fog_u8", "apply_u8_downscale_fp16",
       "apply_u8_geo_folds_fp16", "fill_u8_geo_fold1")


@dataclass
class Compiled:
    """One compiled kernel variant: its launch spec and Triton's compiled object (``asm`` holds PTX/cubin)."""

    name: str
    launch: Launch
    kernel: object


def _stage(b: int, codes: list[tuple[int, ...]] | None, k: int, geometry: Geometry | None = None,
           out_size: tuple[int, int] | None = None, in_scale: float = 1.0) -> Stage:
    prog = torch.zeros(b, k, dtype=torch.int32)
    params = torch.zeros(b, k, 4)
    slot_codes = tuple(codes) if codes is not None else None
    stat = tuple(i for i in range(k) if slot_codes is None or any(c in slot_codes[i] for c in (2, 11, 12)))
    return Stage(program=prog, params=params, in_scale=in_scale, geometry=geometry, out_size=out_size,
                 stat_slots=stat, slot_codes=slot_codes)


def _geometry(b: int, c: int, bilinear: bool, clamp: bool, fill: bool) -> Geometry:
    return Geometry(matrix=torch.eye(3).repeat(b, 1, 1), window=torch.zeros(b, 4), clamp=clamp, bilinear=bilinear,
                    fill=torch.zeros(b, c) if fill else None, quantize=True)


def _epilogue(b: int, c: int, dtype: torch.dtype, norm: bool, rects: int) -> Epilogue:
    ep = Epilogue(out_dtype=dtype, out_channels=c, out_scale=1.0 / 255.0 if dtype.is_floating_point else 1.0)
    if norm:
        ep.mean, ep.std = torch.zeros(b, c), torch.ones(b, c)
    if rects:
        ep.rects = torch.zeros(b, rects, 4, dtype=torch.int32)
        ep.rect_values = torch.zeros(b, rects, c)
        ep.rect_phase = torch.zeros(b, rects, dtype=torch.int32)
    return ep


def _tables(b: int, k: int, c: int):
    return torch.zeros(b, k, c, 2), torch.zeros(b, k, c, 256)


def representative_launches() -> dict[str, Launch]:
    """Launch specs of representative stages (224x224 outputs, batch 4) covering every kernel path."""
    b, c, ho, wo = 4, 3, 224, 224
    u8 = torch.zeros(b, c, ho, wo, dtype=torch.uint8)
    u8_big = torch.zeros(b, c, 256, 320, dtype=torch.uint8)
    cl_fp16 = torch.empty(b, c, ho, wo, dtype=torch.float16, memory_format=torch.channels_last)
    specs: dict[str, Launch] = {}

    st = _stage(b, [], 0, in_scale=1.0)
    specs["apply_u8_fp16_norm"] = prepare_apply(u8, st, *_tables(b, 0, c), _epilogue(b, c, torch.float16, True, 0),
                                                torch.empty(b, c, ho, wo, dtype=torch.float16))

    st = _stage(b, [], 0, geometry=_geometry(b, c, True, True, False), out_size=(ho, wo))
    specs["apply_u8_resize_fp16_cl"] = prepare_apply(u8_big, st, *_tables(b, 0, c),
                                                     _epilogue(b, c, torch.float16, True, 0), cl_fp16)

    codes = [(0, 1, 2, 8, 9, 10), (0, 1, 5, 10)]
    st = _stage(b, codes, 2, geometry=_geometry(b, c, False, False, True), out_size=(ho, wo))
    specs["apply_u8_affine_nearest_u8"] = prepare_apply(u8_big, st, *_tables(b, 2, c),
                                                        _epilogue(b, c, torch.uint8, False, 2),
                                                        torch.empty(b, c, ho, wo, dtype=torch.uint8))

    st = _stage(b, None, 3, geometry=_geometry(b, c, True, False, True), out_size=(ho, wo))
    specs["apply_u8_randaug_fp16"] = prepare_apply(u8_big, st, *_tables(b, 3, c),
                                                   _epilogue(b, c, torch.float16, True, 2),
                                                   torch.empty(b, c, ho, wo, dtype=torch.float16))

    st = _stage(b, [(0, 1), (0, 2), (0, 3), (0, 4)], 4)
    specs["apply_u8_jitter_fp16"] = prepare_apply(u8, st, *_tables(b, 4, c), _epilogue(b, c, torch.float16, True, 0),
                                                  torch.empty(b, c, ho, wo, dtype=torch.float16))

    f32 = torch.zeros(b, c, ho, wo)
    codes = [(0, 1, 6, 8), (0, 1, 5, 13)]
    st = _stage(b, codes, 2)
    specs["apply_f32_sharpness"] = prepare_apply(f32, st, *_tables(b, 2, c), None, torch.empty(b, c, ho, wo))

    st = _stage(b, [(0, int(Op.GAUSSIAN_BLUR), 6), (0, 1, 2)], 2)
    st.taps = torch.zeros(b, 2, 5)
    specs["apply_u8_blur5_u8"] = prepare_apply(u8, st, *_tables(b, 2, c), _epilogue(b, c, torch.uint8, False, 0),
                                               torch.empty(b, c, ho, wo, dtype=torch.uint8))

    st = _stage(b, [(0, 1, 2), (0, int(Op.GAUSSIAN_NOISE))], 2, geometry=_geometry(b, c, True, False, True), out_size=(ho, wo))
    st.keys = torch.zeros(b, 2, dtype=torch.int64)
    specs["apply_u8_affine_noise_fp16"] = prepare_apply(u8_big, st, *_tables(b, 2, c), _epilogue(b, c, torch.float16, True, 0),
                                                        torch.empty(b, c, ho, wo, dtype=torch.float16))

    st = _stage(b, [(0, int(Op.CONVOLVE), 6), (0, 1, 2)], 2)
    st.kernel = torch.zeros(b, 5, 5)
    specs["apply_u8_conv5_u8"] = prepare_apply(u8, st, *_tables(b, 2, c), _epilogue(b, c, torch.uint8, False, 0),
                                               torch.empty(b, c, ho, wo, dtype=torch.uint8))

    geo = _geometry(b, c, True, False, True)
    geo.displacement = torch.zeros(b, ho, wo, 2)
    st = _stage(b, [(0, 1, 2), (0, int(Op.FOG), int(Op.RGB_SHIFT), int(Op.RGB_GAIN))], 2, geometry=geo, out_size=(ho, wo))
    st.keys = torch.zeros(b, 2, dtype=torch.int64)
    specs["apply_u8_elastic_fog_u8"] = prepare_apply(u8_big, st, *_tables(b, 2, c), _epilogue(b, c, torch.uint8, False, 0),
                                                     torch.empty(b, c, ho, wo, dtype=torch.uint8))

    # RandAugment(2)'s stage: the geometry, then two slots of any op, each may sharpen (plan.Fold): the fills of the
    # fold buffers (uint8), a reduction resuming from the first fold, the apply resuming from either
    ra_codes = tuple(sorted({0, *PER_CHANNEL_CODES, int(Op.SHARPNESS), int(Op.SATURATION), int(Op.HUE)}))
    st = _stage(b, [ra_codes, ra_codes], 2, geometry=_geometry(b, c, True, False, True), out_size=(ho, wo))
    st.folds = (Fold(0, True, (0, 1)), Fold(1, True, (1, 1)))
    folds = fold_buffers(u8_big, st)
    specs["fill_u8_geo_fold0"] = prepare_fold_fill(u8_big, st, *_tables(b, 2, c), folds, 0)
    specs["fill_u8_geo_fold1"] = prepare_fold_fill(u8_big, st, *_tables(b, 2, c), folds, 1)
    specs["reduce_u8_geo_folds"] = prepare_reduce(u8_big, st, *_tables(b, 2, c), torch.ones(b, dtype=torch.int32), folds=folds)
    specs["apply_u8_geo_folds_fp16"] = prepare_apply(u8_big, st, *_tables(b, 2, c), _epilogue(b, c, torch.float16, True, 0),
                                                     torch.empty(b, c, ho, wo, dtype=torch.float16), folds)

    # a long stage: folds at 1 and 33 (the fold bitmask exceeds 32 bits: a compile-time test, never an int32 shift)
    st = _stage(b, [PER_CHANNEL_CODES] + [ra_codes] * 33, 34)
    st.folds = (Fold(1, True, (1, 32)), Fold(33, True, (32, 1)))
    folds = fold_buffers(u8, st)
    specs["apply_u8_fold33_u8"] = prepare_apply(u8, st, *_tables(b, 34, c), None, torch.empty(b, c, ho, wo, dtype=torch.uint8), folds)
    specs["fill_u8_fold33"] = prepare_fold_fill(u8, st, *_tables(b, 34, c), folds, 1)

    st = _stage(b, [(0, int(Op.DOWNSCALE)), (0, 1, 2)], 2)
    specs["apply_u8_downscale_fp16"] = prepare_apply(u8, st, *_tables(b, 2, c), _epilogue(b, c, torch.float16, True, 0),
                                                     torch.empty(b, c, ho, wo, dtype=torch.float16))

    c5 = 5
    f64 = torch.zeros(b, c5, ho + 16, wo + 16, dtype=torch.float64)
    st = _stage(b, [PER_CHANNEL_CODES] * 2, 2, geometry=_geometry(b, c5, True, False, True), out_size=(ho, wo))
    specs["apply_f64_c5_runtime_loop"] = prepare_apply(f64, st, *_tables(b, 2, c5),
                                                       _epilogue(b, c5, torch.float32, True, 1),
                                                       torch.empty(b, c5, ho, wo))

    f64c3 = torch.zeros(b, c, ho, wo, dtype=torch.float64)  # float64 input: float64 Plan tensors (``fused.plan_dtype``)
    st = _stage(b, [(0, int(Op.GAUSSIAN_BLUR)), (0, 1, 2)], 2)
    st.taps = torch.zeros(b, 2, 7)
    specs["apply_f64_blur7_jitter"] = prepare_apply(f64c3, st, *_tables(b, 2, c), _epilogue(b, c, torch.float64, True, 1),
                                                    torch.empty(b, c, ho, wo, dtype=torch.float64))
    specs["reduce_f64_contrast"] = prepare_reduce(f64c3, _stage(b, [(0, 1), (0, 2)], 2), *_tables(b, 2, c), 1)

    st = _stage(b, None, 3, geometry=_geometry(b, c, True, False, True), out_size=(ho, wo))
    specs["reduce_u8_geo_rgb"] = prepare_reduce(u8_big, st, *_tables(b, 3, c), 2)

    st = _stage(b, [PER_CHANNEL_CODES] * 2, 2)
    specs["reduce_f32_per_channel"] = prepare_reduce(f32, st, *_tables(b, 2, c), 1)
    # ColorJitter's round: CONTRAST only, so the gray sum only (no minima / maxima, no histograms)
    st = _stage(b, [(0, 1, 2, 3, 4)] * 4, 4, geometry=_geometry(b, c, True, False, True), out_size=(ho, wo))
    specs["reduce_u8_geo_contrast_only"] = prepare_reduce(u8_big, st, *_tables(b, 4, c), torch.zeros(b, dtype=torch.int32),
                                                          needs=(False, False, True))

    specs["hash32_draws"] = prepare_hash32(0x9E3779B9, torch.arange(256), 70, 8)[1]
    table = torch.tensor([[64, 64, 128], [0, 1, 0], [0, 1, 512], [2, 2, 1]])  # (slot 64, n 2), (slot 128, n 1), B = 256
    specs["hash32_table_draws"] = prepare_hash32_table(0x9E3779B9, torch.arange(256), table, torch.tensor(3))[1]

    k = 4  # ColorJitter's four slots, one round: the (min, max) / gray mean entries, with and without EQUALIZE's tables
    st = _stage(b, [(0, 1), (0, 2), (0, 3), (0, 4)], k)
    bookkeeping = (torch.zeros(b, dtype=torch.float64), torch.zeros(b, c), torch.zeros(b, c), torch.zeros(b, c, 256, dtype=torch.int32),
                   torch.zeros(b, dtype=torch.int32), st)  # fmt: skip
    flat_stats, flat_luts = torch.zeros(b * k + 1, c, 2), torch.zeros(b * k + 1, c, 256)
    specs["tables_contrast"] = tables.prepare_tables(*bookkeeping, flat_stats, None, ho * wo, True)
    specs["tables_equalize"] = tables.prepare_tables(*bookkeeping, flat_stats, flat_luts, ho * wo, False)
    allowed = torch.tensor([1 << int(Op.CONTRAST)] * k, dtype=torch.int64)
    specs["round_setup_f32"] = tables.prepare_round_setup(st, allowed, b, c, torch.float32, "cpu")[2]
    specs["round_setup_f64"] = tables.prepare_round_setup(st, allowed, b, c, torch.float64, "cpu")[2]

    rows = torch.zeros(b, 4, 9)
    kinds = torch.tensor([geometry.AFFINE, geometry.MATRIX, geometry.ROTATE, geometry.AFFINE], dtype=torch.int32)
    specs["geometry_compose_masked"] = geometry.prepare_compose(rows, kinds, torch.ones(b, 4, dtype=torch.bool), torch.float32)[2]
    specs["geometry_compose_f64"] = geometry.prepare_compose(rows.double()[:, :1].contiguous(), kinds[:1], None, torch.float64)[2]
    return specs


def kernel_of(spec: Launch, interpret: bool = False):
    """The jit function a launch runs (the forward kernels' module, the tables' or the geometry's)."""
    own = {"stats_tables_kernel": tables, "round_setup_kernel": tables, "compose_kernel": geometry}.get(spec.kernel)
    mod = kernel_module(interpret) if own is None else own.kernel_module(interpret)
    return getattr(mod, spec.kernel)


def _arg_type(value) -> tuple[str, bool]:
    """(Triton signature type, 16-divisibility) of a runtime argument, as Triton's JIT specialises it."""
    if isinstance(value, torch.Tensor):
        return _PTR_TYPES[value.dtype], value.data_ptr() % 16 == 0
    if isinstance(value, bool):
        return "i1", False
    if isinstance(value, int):
        return ("i32" if -(2**31) <= value < 2**31 else "i64"), value % 16 == 0
    if isinstance(value, float):
        return "fp32", False
    raise TypeError(f"unsupported argument {value!r}")


def unspecialized(fn) -> tuple[str, ...]:
    """The names of ``fn``'s arguments that its ``@triton.jit(do_not_specialize=...)`` leaves unspecialised."""
    names = fn.arg_names
    return tuple(names[a] if isinstance(a, int) else a for a in (getattr(fn, "do_not_specialize", None) or ()))


def ast_source(spec: Launch, fn) -> triton.compiler.ASTSource:
    """The ``ASTSource`` of a launch: runtime args typed, ints equal to 1 and constexprs folded in, 16-divisibility
    hints, except for the arguments that the kernel's ``do_not_specialize`` names (as Triton's JIT does)."""
    values = {**spec.args, **spec.constexprs}
    plain = set(unspecialized(fn))
    signature, constexprs, attrs = {}, {}, {}
    for i, name in enumerate(fn.arg_names):
        value = values[name]
        special = name not in plain
        if name in spec.constexprs or (special and isinstance(value, int) and not isinstance(value, bool) and value == 1):
            signature[name] = "constexpr"
            constexprs[name] = value
            continue
        ty, div16 = _arg_type(value)
        signature[name] = ty
        if div16 and special:
            attrs[(i,)] = [["tt.divisibility", 16]]
    return triton.compiler.ASTSource(fn, signature, constexprs, attrs)


def compile_all(target: GPUTarget, names: tuple[str, ...] | None = None) -> dict[str, Compiled]:
    """Compile every representative kernel variant for ``target`` (PTX and cubin, no GPU needed)."""
    out = {}
    for name, spec in representative_launches().items():
        if names is not None and name not in names:
            continue
        fn = kernel_of(spec)
        opts = {"num_warps": spec.num_warps, "enable_fp_fusion": False}
        out[name] = Compiled(name, spec, triton.compile(ast_source(spec, fn), target=target, options=opts))
    return out


@dataclass
class PtxasInfo:
    """Resource usage reported by ``ptxas -v`` and a few facts read off the PTX."""

    registers: int
    spill_stores: int
    spill_loads: int
    stack_frame: int
    ld_v4: bool
    ld_v2: bool
    st_v4: bool
    local_memory: bool
    log: str


def ptxas_path(arch: int) -> str:
    """The ptxas Triton uses for compute capability ``arch`` (e.g. 80, 90)."""
    from triton.backends.nvidia.compiler import get_ptxas

    return get_ptxas(arch).path


def ptxas_info(ptx: str, arch: int) -> PtxasInfo:
    """Run Triton's ptxas with ``-v`` on ``ptx`` for ``arch`` and parse registers and spills."""
    from triton.backends.nvidia.compiler import sm_arch_from_capability

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        cmd = [ptxas_path(arch), "-v", "--fmad=false", "--regAllocOptLevel=2",
               f"--gpu-name={sm_arch_from_capability(arch)}", src, "-o", os.path.join(tmp, "kernel.cubin")]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    log = res.stdout + res.stderr
    regs = re.search(r"Used (\d+) registers", log)
    spill = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if regs is None or spill is None:
        raise RuntimeError(f"cannot parse ptxas output:\n{log}")
    return PtxasInfo(
        registers=int(regs.group(1)),
        stack_frame=int(spill.group(1)),
        spill_stores=int(spill.group(2)),
        spill_loads=int(spill.group(3)),
        ld_v4=re.search(r"ld\.global[\w.:]*\.v4\.", ptx) is not None,
        ld_v2=re.search(r"ld\.global[\w.:]*\.v2\.", ptx) is not None,
        st_v4=re.search(r"st\.global[\w.:]*\.v4\.", ptx) is not None,
        local_memory=re.search(r"\.local\b|ld\.local|st\.local", ptx) is not None,
        log=log,
    )
