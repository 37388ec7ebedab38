"""Compile each hot row loop of the numba kernels into a small wrapper and count its vector instructions.

Run by ``test_vectorised.py`` in a fresh process under an AVX2 target (``NUMBA_CPU_NAME=haswell`` and
``NUMBA_CPU_FEATURES`` without AVX-512, set before numba starts): a loop that LLVM leaves scalar on AVX2 (a hue
loop reading constants that may alias the row buffer did: 13x slower) shows almost no ``ymm`` registers. Nothing is
executed, so any x86 machine can compile for the target. Prints one JSON object: {loop: ymm count}.
"""

from __future__ import annotations

import json
import re

import numba
import numpy as np
from fastaug.kernels.numba import fused as F
from numba import njit

jit = njit(error_model="numpy")
f32 = np.float32
W = 64


def _op(code, cst):
    """A wrapper of ``_op_row`` for one op code, and its arguments."""

    @jit
    def run(buf, st, lut, cst, tmp):
        F._op_row(buf, 3, buf.shape[1], code, f32(0.7), f32(1.0), f32(0.0), True, st, lut, cst, tmp)

    return run, (np.ones((3, W), f32), np.ones((3, 2), f32), np.ones((3, 256), f32), cst, np.ones((4, W + 2), f32))


@jit
def _noise(buf, tmp, cst):
    F._noise_row(buf, 3, buf.shape[1], 5, 1234, f32(0.0), f32(0.05), True, True, cst, tmp)


@jit
def _dropout(buf, tmp, cst):
    F._uniform_row(buf, 3, buf.shape[1], 5, F.PIXEL_DROPOUT, 1234, f32(0.1), f32(0.0), True, -1, True, cst, tmp)


@jit
def _blur(src, taps, line, ring, buf, cst):
    F._blur_row(src, 0, W, W * W, 1, 3, W, W, f32(1), 5, True, taps, True, cst[F.ZERO], line, ring, buf)


@jit
def _coords(fs, iv, m, win, xs, cst, wt, ms, ofs, dsp):
    F._coords_row(fs, iv, m, win, xs, f32(3), xs.shape[0], W, 1, cst, wt, ms, ofs, dsp)


@jit
def _blend(iv, fill, wt, ms, taps, buf):
    F._blend_packed(iv, fill, 3, buf.shape[1], f32(1), wt, ms, taps, buf)


@jit
def _epilogue(buf, iv, fs, mean, std, rects, rphase, rvals, cst):
    F._epilogue_row(buf, buf.shape[1], 3, iv, fs, mean, std, rects, rphase, rvals, cst)


@jit
def _store(out, buf):
    F._store_row(out, 0, W, 1, 3, buf.shape[1], buf, False)


@jit
def _gray_sum(buf, cst, mn, mx, hist):
    return F._stats_row(buf, 3, buf.shape[1], True, 1, cst, 0.0, mn, mx, hist)


@jit
def _read(src, buf):
    F._read_row(src, 0, W * W, 1, 3, buf.shape[1], f32(1), buf)


def cases():
    cst = F.constants(f32)
    iv = np.zeros(F.NUM_FLAGS, np.int64)
    iv[F.I_GEO], iv[F.I_CO], iv[F.I_NORM] = 2, 3, 1
    fs = np.array([1, 1 / 255, W - 1, W - 1], f32)
    buf = np.ones((3, W), f32)
    tmp = np.ones((4, W + 2), f32)
    out = {f"op {name}": _op(getattr(F, name), cst) for name in ("BRIGHTNESS", "CONTRAST", "SATURATION", "HUE", "POSTERIZE", "SOLARIZE")}
    out["gaussian noise"] = (_noise, (buf, tmp, cst))
    out["pixel dropout"] = (_dropout, (buf, tmp, cst))
    out["gaussian blur"] = (_blur, (np.ones(3 * W * W, np.uint8), np.ones((2, 5), f32), np.ones((3, W + 4), f32), np.ones((5, 3, W), f32),
                                    buf, cst))
    out["bilinear coordinates"] = (_coords, (fs, iv, np.eye(3, dtype=f32).ravel(), np.zeros(4, f32), np.arange(W, dtype=f32), cst, tmp,
                                             np.ones(W, f32), np.zeros((4, W), np.int32), np.zeros((0, 2), f32)))
    out["bilinear blend"] = (_blend, (iv, np.zeros(3, f32), tmp, np.ones(W, f32), np.zeros((4, W), np.uint32), buf))
    out["epilogue (normalize)"] = (_epilogue, (buf, iv, fs, np.zeros(3, f32), np.ones(3, f32), np.zeros((0, 4), np.int32),
                                               np.zeros(0, np.int32), np.zeros((0, 3), f32), cst))
    out["store row"] = (_store, (np.ones(3 * W, f32), buf))
    out["read row"] = (_read, (np.ones(3 * W * W, np.uint8), buf))
    out["gray sum (contrast statistics)"] = (_gray_sum, (buf, cst, np.zeros(3, f32), np.zeros(3, f32), np.zeros((3, 256), np.int64)))
    return out


def main() -> None:
    counts = {}
    for name, (fn, args) in cases().items():
        fn.compile(tuple(numba.typeof(a) for a in args))
        asm = "\n".join(fn.inspect_asm().values())
        counts[name] = len(re.findall(r"%ymm\d+", asm))
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
