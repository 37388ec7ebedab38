"""The float64 statistics path compiles ahead of time for sm_80 and sm_90 (no GPU needed; the interpreter would accept
code the compiler rejects): a float64 stage's reduction folds its minima / maxima in with 64-bit float atomics
(``reduce_kernel`` with float64 ``vmin`` / ``vmax``) and ``stats_tables_kernel`` writes float64 tables
(``engine.table_dtype``), as the runtime launches them."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("triton")

import torch  # noqa: E402
import triton  # noqa: E402
from fastaug.kernels.triton import aot, fused, tables  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402

from fastaug.plan import Op  # noqa: E402


def _launches() -> dict[str, fused.Launch]:
    b, c, hw, k = 4, 3, 224, 2
    x = torch.zeros(b, c, hw, hw, dtype=torch.float64)
    st = aot._stage(b, [(0, 1), (0, int(Op.AUTOCONTRAST), int(Op.EQUALIZE), int(Op.CONTRAST))], k)
    stats, luts = (t.double() for t in aot._tables(b, k, c))
    reduce = fused.prepare_reduce(x, st, stats, luts, torch.ones(b, dtype=torch.int32))
    a = reduce.args
    assert a["vmin"].dtype == a["vmax"].dtype == torch.float64
    flat_stats = torch.zeros(b * k + 1, c, 2, dtype=torch.float64)
    flat_luts = torch.zeros(b * k + 1, c, 256, dtype=torch.float64)
    table = tables.prepare_tables(a["gsum"], a["vmin"], a["vmax"], a["hist"], a["stops"], st, flat_stats, flat_luts, hw * hw, True)
    return {"reduce": reduce, "tables": table}


@pytest.mark.parametrize("arch", [80, 90], ids=lambda a: f"sm_{a}")
def test_float64_statistics_kernels_compile(arch):
    launches = _launches()
    mods = {"reduce": fused.kernel_module(interpret=False), "tables": tables.kernel_module(interpret=False)}
    for name, spec in launches.items():
        fn = getattr(mods[name], spec.kernel)
        opts = {"num_warps": spec.num_warps, "enable_fp_fusion": False}
        kernel = triton.compile(aot.ast_source(spec, fn), target=GPUTarget("cuda", arch, 32), options=opts)
        ptx, cubin = kernel.asm["ptx"], kernel.asm["cubin"]
        assert f".target sm_{arch}" in ptx and cubin[:4] == b"\x7fELF", name
        if name == "reduce":  # float64 minima / maxima: 64-bit atomics (signed max / unsigned min on the bits, or the reverse)
            assert re.search(r"(?:atom|red)\.[\w.]*\.(s64|u64)", ptx), name  # red: a relaxed atomic whose value is unused
            assert not re.search(r"(?:atom|red)\.[\w.]*(max|min)[\w.]*\.(s32|u32)", ptx), name
        else:
            assert re.search(r"st\.global[\w.]*\.(f64|b64|u64)", ptx), name
