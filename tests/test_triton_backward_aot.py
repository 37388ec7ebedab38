"""Ahead-of-time compilation of the Triton backward kernel for sm_80 and sm_90 (runs on CPU, no GPU needed).

The interpreter accepts code that the real compiler rejects: this checks that every representative
variant of ``backward_kernel`` (``kernels/triton/backward.py``) compiles to PTX and cubin, and that the hot
ones neither spill nor use local memory (ptxas -v, the ptxas shipped with Triton).
"""

from __future__ import annotations

import pytest

pytest.importorskip("triton")

from fastaug.kernels.triton import aot  # noqa: E402
from fastaug.kernels.triton import backward as tb  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402


@pytest.fixture(scope="module", params=[80, 90], ids=lambda a: f"sm_{a}")
def compiled(request):
    arch = request.param
    return arch, tb.compile_all(GPUTarget("cuda", arch, 32))


def test_every_backward_variant_has_ptx_and_cubin(compiled):
    arch, kernels = compiled
    assert set(kernels) == set(tb.representative_launches())
    assert set(tb.HOT) <= set(kernels)
    for name, k in kernels.items():
        ptx, cubin = k.kernel.asm["ptx"], k.kernel.asm["cubin"]
        assert f".target sm_{arch}" in ptx, name
        assert ".entry backward_kernel" in ptx, name
        assert "atom.global" in ptx or "red.global" in ptx, name  # gradients fold in with atomics
        assert isinstance(cubin, bytes) and cubin[:4] == b"\x7fELF", name


def test_hot_backward_variants_do_not_spill(compiled):
    arch, kernels = compiled
    for name in tb.HOT:
        info = aot.ptxas_info(kernels[name].kernel.asm["ptx"], arch)
        assert info.spill_stores == 0 and info.spill_loads == 0, f"{name}: {info.log}"
        assert info.stack_frame == 0 and not info.local_memory, f"{name}: {info.log}"


def test_autocontrast_backward_divides_exactly(compiled):
    """AUTOCONTRAST's clamp band decides its ties (the max pixels map to exactly 1) on correctly rounded quotients
    (div.rn, as the forward and the reference): Triton's float32 ``/`` is the approximate div.full.f32, whose
    (hi - lo) / (hi - lo) can be 1 + ulp and drop the gradient of the tied max pixels. The variants run nothing else."""
    arch, kernels = compiled
    for name in ("bwd_autocontrast", "bwd_autocontrast_pass"):
        ptx = kernels[name].kernel.asm["ptx"]
        assert "div.full" not in ptx, name
        assert "div.rn.f32" in ptx, name
