"""Ahead-of-time compilation of every Triton kernel for sm_80 and sm_90 (runs on CPU, no GPU needed).

The interpreter accepts code that the real compiler rejects, so this is the check that the kernels
compile: PTX and cubin for every representative kernel variant, and no spills or local memory in
the hot ones (ptxas -v, the ptxas shipped with Triton).
"""

from __future__ import annotations

import math

import pytest

pytest.importorskip("triton")

from fastaug.kernels.triton import aot  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402


@pytest.fixture(scope="module", params=[80, 90], ids=lambda a: f"sm_{a}")
def compiled(request):
    arch = request.param
    return arch, aot.compile_all(GPUTarget("cuda", arch, 32))


def test_every_kernel_has_ptx_and_cubin(compiled):
    arch, kernels = compiled
    assert set(kernels) == set(aot.representative_launches())
    assert {k.launch.kernel for k in kernels.values()} == {"apply_kernel", "reduce_kernel", "hash32_kernel", "hash32_table_kernel",
                                                                 "stats_tables_kernel", "compose_kernel", "round_setup_kernel",
                                                                 "fold_fill_kernel"}
    for name, k in kernels.items():
        ptx, cubin = k.kernel.asm["ptx"], k.kernel.asm["cubin"]
        assert f".target sm_{arch}" in ptx, name
        assert f".entry {k.launch.kernel}" in ptx, name
        assert isinstance(cubin, bytes) and cubin[:4] == b"\x7fELF", name


def test_geometry_degrees_are_a_float64_constant(compiled):
    """pi / 180 in the composition kernel is the float64 constant for float64 rows (a bare float constexpr would be
    rounded to float32: a 3e-8 relative error in every angle), the float32 one for float32 rows (as the torch path)."""
    import struct

    _, kernels = compiled
    bits64 = struct.unpack("<Q", struct.pack("<d", math.pi / 180.0))[0]
    assert f"0d{bits64:016X}" in kernels["geometry_compose_f64"].kernel.asm["ptx"]
    bits32 = struct.unpack("<I", struct.pack("<f", math.pi / 180.0))[0]
    assert f"0f{bits32:08X}" in kernels["geometry_compose_masked"].kernel.asm["ptx"]


def test_reductions_use_relaxed_atomics_and_only_what_they_need(compiled):
    """Every reduce variant folds its statistics with relaxed atomics (no acquire / release ordering), and ColorJitter's
    CONTRAST-only round adds its gray sums alone (no min / max, no histogram atomics)."""
    import re

    _, kernels = compiled

    def global_atomics(name: str) -> set[str]:  # (tl.histogram's own shared-memory atomics are Triton's)
        return set(re.findall(r"\b(?:atom|red)\.global\.[\w.]+", kernels[name].kernel.asm["ptx"]))

    for name, k in kernels.items():
        if k.launch.kernel == "reduce_kernel":
            ops = global_atomics(name)
            assert ops and all(".relaxed." in op for op in ops), (name, ops)
    ops = global_atomics("reduce_u8_geo_contrast_only")  # red (newer Triton) or atom (3.6)
    assert len(ops) == 1 and ops.pop().endswith(".global.gpu.relaxed.add.f64"), ops


def test_hot_kernels_do_not_spill(compiled):
    arch, kernels = compiled
    for name in aot.HOT:
        info = aot.ptxas_info(kernels[name].kernel.asm["ptx"], arch)
        assert info.spill_stores == 0 and info.spill_loads == 0, f"{name}: {info.log}"
        assert info.stack_frame == 0 and not info.local_memory, f"{name}: {info.log}"


def test_plain_pass_is_vectorised(compiled):
    """uint8 -> float16 without geometry: 16-byte loads and stores along W."""
    arch, kernels = compiled
    info = aot.ptxas_info(kernels["apply_u8_fp16_norm"].kernel.asm["ptx"], arch)
    assert info.ld_v4 and info.st_v4
