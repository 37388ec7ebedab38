"""Registers, spills, wide loads and local memory of every Triton kernel, for sm_80 and sm_90.

Compiles the backend's representative kernel variants ahead of time (no GPU needed) and runs the
ptxas shipped with Triton on their PTX::

    python scripts/ptxas_report.py
"""

from __future__ import annotations

import argparse

from fastaug.kernels.triton import aot
from triton.backends.compiler import GPUTarget


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, nargs="+", default=[80, 90], help="compute capabilities")
    args = parser.parse_args(argv)
    header = f"{'arch':6} {'kernel':28} {'tile':7} {'regs':>4} {'spill st/ld':>11} {'stack':>5}  ld.v4 ld.v2 st.v4 local hot"
    print(header)
    print("-" * len(header))
    for arch in args.arch:
        for name, k in aot.compile_all(GPUTarget("cuda", arch, 32)).items():
            info = aot.ptxas_info(k.kernel.asm["ptx"], arch)
            tile = f"{k.launch.constexprs['BH']}x{k.launch.constexprs['BW']}"
            print(f"sm_{arch:<3} {name:28} {tile:7} {info.registers:4d} {info.spill_stores:5d}/{info.spill_loads:<5d}"
                  f" {info.stack_frame:5d}  {_yn(info.ld_v4):5} {_yn(info.ld_v2):5} {_yn(info.st_v4):5}"
                  f" {_yn(info.local_memory):5} {_yn(name in aot.HOT)}")
    return 0


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


if __name__ == "__main__":
    raise SystemExit(main())
