"""Per-op reference table: every backend against the torch reference, and the reference against torchvision.

``python -m benchmarks.op_reference`` runs each functional op of the catalogue (``fastaug.ops.catalogue
.CATALOGUE``, those present in ``fastaug.functional``) once per (interpolation, dtype, channel count) on a
batch of B=4 odd-sized images (23x19) with random per-sample magnitudes, and reports per (op, dtype):

* numba: max |numba - torch| (uint8 in LSB, float absolute) and the fraction of exactly equal values;
* triton: max |triton - torch| under Triton's CPU interpreter (``TRITON_INTERPRET=1``);
* torchvision: max |torch backend - torchvision.transforms.v2.functional per sample| and the exact
  fraction, leaving out the pixels within 1 px of an interpolating geometric op's image border (where
  the image meets the fill; see DESIGN.md, Semantics). float64 inputs get this column only.

Magnitudes come from the catalogue's argument ranges (open ranges from ``RANGES``) or, for ops whose
arguments are not plain magnitudes, from ``EXAMPLES``; an op it cannot exercise gets a warning line.
Writes ``benchmarks/results/op_reference.json`` and the README section "Per-op reference table".
A report, not a test: nothing here asserts.
"""

from __future__ import annotations

import os

# Triton's jit helpers are built for the interpreter only if TRITON_INTERPRET=1 when triton is first
# imported (as in tests/test_triton_backend.py): set it before anything can import triton.
os.environ["TRITON_INTERPRET"] = "1"

import inspect  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as NF  # noqa: E402

import fastaug.functional as F  # noqa: E402
from fastaug.ops import catalogue as cat  # noqa: E402

B, H, W = 4, 23, 19
DTYPES = (torch.uint8, torch.float16, torch.float32, torch.float64)  # float64: the torchvision column only
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "op_reference.json"
README = HERE / "README.md"
START, END = "<!-- op-reference:start -->", "<!-- op-reference:end -->"
LIMITS = {torch.uint8: 1.0, torch.float32: 1e-5}  # beyond these a difference is a bug (DESIGN.md, Semantics)

# ranges for magnitudes the catalogue leaves open-ended (lo or hi None)
RANGES: dict[str, tuple[float, float]] = {
    "brightness_factor": (0.0, 2.0),
    "contrast_factor": (0.0, 2.0),
    "saturation_factor": (0.0, 2.0),
    "sharpness_factor": (0.0, 3.0),
    "gamma": (0.3, 3.0),
    "gain": (0.5, 1.5),
    "angle": (-45.0, 45.0),
    "lightness": (0.5, 1.0),  # albumentations' Sharpen / Emboss defaults
    "strength": (0.2, 0.7),
}


def _u(g: torch.Generator, lo: float, hi: float, *shape: int) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(*(shape or (B,)), generator=g, dtype=torch.float64)


def _i(g: torch.Generator, lo: int, hi: int, *shape: int) -> torch.Tensor:
    """Integers in [lo, hi], as float64 (fastaug magnitudes)."""
    return torch.randint(lo, hi + 1, shape or (B,), generator=g).to(torch.float64)


def _corners() -> list[list[float]]:
    return [[0.0, 0.0], [W - 1.0, 0.0], [W - 1.0, H - 1.0], [0.0, H - 1.0]]


# ops whose arguments are not plain magnitudes: (generator, channels, bound) -> kwargs (tensors are per sample)
EXAMPLES: dict[str, Any] = {
    "rgb_to_grayscale": lambda g, c, bound: {"num_output_channels": 1},
    "gaussian_blur": lambda g, c, bound: {"kernel_size": [5, 3], "sigma": _u(g, 0.3, 2.0)},
    "convolve": lambda g, c, bound: {"kernel": _u(g, -0.2, 0.3, B, 5, 5)},
    "motion_blur": lambda g, c, bound: {"kernel_size": 2 * _i(g, 1, 2) + 1, "angle": _u(g, 0, 360), "direction": _u(g, -1, 1)},
    "gaussian_noise": lambda g, c, bound: {"mean": _u(g, -0.05, 0.05), "sigma": _u(g, 0.0, 0.2), "clip": True},
    "pixel_dropout": lambda g, c, bound: {
        "dropout_prob": _u(g, 0, 0.3), "drop_value": _u(g, 0, bound), "per_channel": bool(_i(g, 0, 1)[0]),
    },
    "multiplicative_noise": lambda g, c, bound: {
        "low": (low := _u(g, 0.7, 1.0)), "high": low + _u(g, 0, 0.3), "per_channel": bool(_i(g, 0, 1)[0]),
    },
    "affine": lambda g, c, bound: {
        "angle": _u(g, -30, 30), "translate": _u(g, -3, 3, B, 2), "scale": _u(g, 0.8, 1.2), "shear": _u(g, -10, 10, B, 2),
    },
    "crop": lambda g, c, bound: {"top": _i(g, -2, 5), "left": _i(g, -2, 5), "height": H - 5, "width": W - 3},
    # torchvision's resized_crop slices: integer boxes
    "resized_crop": lambda g, c, bound: {
        "top": _i(g, 0, 5), "left": _i(g, 0, 4), "height": _i(g, H // 2, H - 6), "width": _i(g, W // 2, W - 5), "size": [17, 29],
    },
    "perspective": lambda g, c, bound: {
        "startpoints": _corners(), "endpoints": torch.tensor(_corners(), dtype=torch.float64) + _u(g, -3, 3, B, 4, 2),
    },
    "erase": lambda g, c, bound: {
        "i": _i(g, 0, H - 3), "j": _i(g, 0, W - 3), "h": _i(g, 1, 8), "w": _i(g, 1, 8),
        "v": _i(g, 0, 255, B, c) if bound == 255 else _u(g, 0, 1, B, c),
    },
    "xy_masking": lambda g, c, bound: {
        "num_masks_x": (0, 2), "num_masks_y": (0, 2), "mask_x_length": (1, 5), "mask_y_length": (1, 5),
        "fill": 128 if bound == 255 else 0.5,
    },
    "normalize": lambda g, c, bound: {"mean": _u(g, 0.3, 0.6, c).tolist(), "std": _u(g, 0.2, 0.3, c).tolist()},
    "rgb_shift": lambda g, c, bound: {"r_shift": _u(g, -0.2, 0.2) * bound, "g_shift": _u(g, -0.2, 0.2) * bound,
                                      "b_shift": _u(g, -0.2, 0.2) * bound},
    "rgb_gain": lambda g, c, bound: {"r_gain": _u(g, 0.5, 1.5), "g_gain": _u(g, 0.5, 1.5), "b_gain": _u(g, 0.5, 1.5)},
    "fog": lambda g, c, bound: {"density": _u(g, 0.3, 1.0), "scale": _u(g, 0.1, 0.6), "threshold": _u(g, 0.0, 0.5)},
    "downscale": lambda g, c, bound: {"scale": _u(g, 0.2, 0.9), "down_interpolation": "bilinear", "up_interpolation": "bilinear"},
    "superpixels": lambda g, c, bound: {"p_replace": _u(g, 0.2, 0.8), "n_segments": _i(g, 5, 20), "max_segments": 20},
    "elastic_transform": lambda g, c, bound: {"displacement": _u(g, -0.1, 0.1, B, H, W, 2)},
    "to_dtype": lambda g, c, bound: {"dtype": torch.float32 if bound == 255 else torch.uint8, "scale": True},
}  # fmt: skip


def functional_ops() -> tuple[list[cat.OpSpec], list[str]]:
    """The catalogue's functional ops present in fastaug.functional (one spec per name), and warnings."""
    specs, warnings, seen = [], [], set()
    for s in cat.CATALOGUE:
        if s.function in seen:
            continue  # to_dtype: two codes, one function
        seen.add(s.function)
        if not callable(getattr(F, s.function, None)):  # identity: a program op only
            warnings.append(f"note: {s.function} is not in fastaug.functional: skipped")
            continue
        params = list(inspect.signature(getattr(F, s.function)).parameters.values())[1:]
        missing = [a.name for a in s.args if _range(a) is None] + [
            p.name for p in params if p.default is p.empty and p.kind != p.KEYWORD_ONLY and p.name not in {a.name for a in s.args}
        ]
        if s.function not in EXAMPLES and missing:
            warnings.append(f"warning: cannot exercise {s.function}: no range or example for {missing}")
            continue
        specs.append(s)
    return specs, warnings


def _range(a: cat.Arg, bound: float = 255.0) -> tuple[float, float] | None:
    if a.lo is not None and a.hi is not None:
        return float(a.lo), bound if a.hi == "bound" else float(a.hi)
    return RANGES.get(a.name)


def batch_kwargs(s: cat.OpSpec, mode: str | None, c: int, dtype: torch.dtype, g: torch.Generator) -> dict[str, Any]:
    """One call's kwargs: per-sample magnitudes ([B] tensors) drawn inside each argument's range."""
    bound = 255.0 if dtype == torch.uint8 else 1.0
    if s.function in EXAMPLES:
        kw = EXAMPLES[s.function](g, c, bound)
    else:
        kw = {}
        for a in s.args:
            lo, hi = _range(a, bound)
            kw[a.name] = _i(g, int(lo), int(hi)) if a.integer else _u(g, lo, hi)
    if mode is not None:
        kw["interpolation"] = mode
    return kw


def sample_kwargs(kw: dict[str, Any], i: int, x: torch.Tensor) -> dict[str, Any]:
    """Sample ``i``'s kwargs for torchvision: per-sample tensors become numbers / lists (integral values
    of integer arguments as ints), interpolation an InterpolationMode, erase's value a [C,1,1] tensor."""
    out = {}
    for k, v in kw.items():
        if isinstance(v, torch.Tensor):
            v = v[i].tolist()
            if k in cat.INTEGER_ARGS and float(v) == int(v):
                v = int(v)
        if k == "interpolation":
            v = TF.InterpolationMode(v)
        if k == "v":
            v = torch.tensor(v, dtype=x.dtype).view(-1, 1, 1)
        if k == "displacement":  # torchvision: [1, H, W, 2]
            v = torch.tensor(v, dtype=torch.float32).unsqueeze(0)
        out[k] = v
    return out


def compare(got: torch.Tensor, ref: torch.Tensor, keep: torch.Tensor | None = None) -> dict[str, Any]:
    """max |got - ref| (uint8 as ints, float in float64) and the fraction of equal values, over ``keep``."""
    if got.shape != ref.shape or got.dtype != ref.dtype:
        return {"error": f"got {got.dtype}{list(got.shape)}, reference {ref.dtype}{list(ref.shape)}"}
    diff = (got.int() - ref.int()).abs().double() if ref.dtype == torch.uint8 else (got.double() - ref.double()).abs()
    if keep is not None:
        diff = diff[keep.expand_as(diff)]
    unit = str(ref.dtype).removeprefix("torch.")
    return {"max": float(diff.max()) if diff.numel() else 0.0, "equal": int((diff == 0).sum()), "n": diff.numel(), "unit": unit}


def interior(fn, x: torch.Tensor, kw: dict[str, Any]) -> torch.Tensor:
    """Output pixels more than 1 px from the image's border after a geometric op: the op maps an
    all-ones image to 1 (or to 0, the fill; within float32 rounding) on the pixel and its 8 neighbours."""
    m = fn(torch.ones_like(x[:, :1], dtype=torch.float32), **kw, backend="torch").double()
    hi, lo = NF.max_pool2d(m, 3, 1, 1), -NF.max_pool2d(-m, 3, 1, 1)
    return (lo > 1 - 1e-4) | (hi < 1e-4)


def image(dtype: torch.dtype, c: int, g: torch.Generator) -> torch.Tensor:
    if dtype == torch.uint8:
        return torch.randint(0, 256, (B, c, H, W), generator=g, dtype=torch.uint8)
    return torch.rand(B, c, H, W, generator=g, dtype=torch.float64).to(dtype)


MAX_LISTED = 256  # values of a tensor argument written out; a larger one (a displacement field) is summarised


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor) and v.numel() > MAX_LISTED:
        return {"shape": list(v.shape), "min": round(float(v.min()), 6), "max": round(float(v.max()), 6)}
    if isinstance(v, torch.Tensor):
        return [round(t, 6) for t in v.flatten().tolist()] if v.dim() <= 1 else _jsonable(list(v))
    if isinstance(v, (list, tuple)):
        return [_jsonable(t) for t in v]
    return str(v) if isinstance(v, torch.dtype) else v


def run_case(s: cat.OpSpec, mode: str | None, dtype: torch.dtype, c: int) -> dict[str, Any]:
    """One (op, interpolation, dtype, channels) case: every backend and torchvision against the reference."""
    label = s.function + (f" ({mode})" if mode else "")
    seed = zlib.crc32(f"{label}|{dtype}|{c}".encode()) & 0x7FFFFFFF
    g = torch.Generator().manual_seed(seed)
    x = image(dtype, c, g)
    kw = batch_kwargs(s, mode, c, dtype, g)
    case: dict[str, Any] = {"op": label, "dtype": str(dtype).removeprefix("torch."), "shape": [B, c, H, W], "seed": seed,
                            "kwargs": {k: _jsonable(v) for k, v in kw.items()}}  # fmt: skip
    fn = getattr(F, s.function)
    try:
        ref = fn(x, **kw, backend="torch")
    except Exception as e:  # half-done work elsewhere in the tree: report, go on
        return case | {"error": f"torch: {type(e).__name__}: {e}"}
    for backend in ("numba", "triton") if dtype != torch.float64 else ():
        try:
            case[backend] = compare(fn(x, **kw, backend=backend), ref)
        except Exception as e:
            case[backend] = {"error": f"{type(e).__name__}: {e}"}
    if TF is not None and hasattr(TF, s.function) and s.kind != cat.RANDOM:  # random ops: other draws than torchvision's
        try:
            tv_fn, xs = getattr(TF, s.function), x
            if s.function == "normalize" and dtype == torch.uint8:  # torchvision normalizes float images only
                xs = TF.to_dtype(x, torch.float32, scale=True)
            theirs = torch.stack([tv_fn(xs[i], **sample_kwargs(kw, i, x)) for i in range(B)])
            keep = interior(fn, x, kw) if mode is not None and s.kind == cat.GEOMETRIC else None
            case["torchvision"] = compare(ref, theirs, keep)
        except Exception as e:  # torchvision's color ops take 1 or 3 channels only
            case["torchvision"] = {"skipped" if c not in (1, 3) else "error": f"{type(e).__name__}: {e}"}
    return case


def cases_of(s: cat.OpSpec) -> list[tuple[str | None, torch.dtype, int]]:
    fn = getattr(F, s.function)
    modes = ("nearest", "bilinear") if "interpolation" in inspect.signature(fn).parameters else (None,)
    channels = s.channels or (1, 3, 4)
    return [(m, d, c) for m in modes for d in DTYPES for c in channels]


COLUMNS = ("numba", "triton", "torchvision")


def summarize(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (op, dtype): the worst max over its channel counts, the overall equal fraction."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for case in cases:
        row = rows.setdefault((case["op"], case["dtype"]), {"op": case["op"], "dtype": case["dtype"], "channels": []})
        row["channels"].append(case["shape"][1])
        if "error" in case:
            row["error"] = case["error"]
        for col in COLUMNS:
            r = case.get(col)
            if r is None or "skipped" in r:
                continue
            acc = row.setdefault(col, {"max": 0.0, "equal": 0, "n": 0, "unit": r.get("unit")})
            if "error" in r or "error" in acc:
                acc.clear()
                acc["error"] = r.get("error", acc.get("error"))
                continue
            acc["max"], acc["equal"], acc["n"] = max(acc["max"], r["max"]), acc["equal"] + r["equal"], acc["n"] + r["n"]
    return list(rows.values())


def _cell(r: dict[str, Any] | None, exact: bool = True) -> str:
    if r is None:
        return "—"
    if "error" in r:
        return "error"
    m = f"{int(r['max'])}" if r["unit"] == "uint8" else ("0" if r["max"] == 0 else f"{r['max']:.1e}")
    return m + (f" ({100 * r['equal'] / max(r['n'], 1):.1f}%)" if exact else "")


def render_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: max |difference| (equal %) per (op, dtype)."""
    lines = [
        "| op | dtype | C | numba - torch (equal) | triton - torch | torch - torchvision (equal) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        d = r["dtype"]
        if "error" in r:
            lines.append(f"| {r['op']} | {d} | | error: {r['error'][:80]} | | |")
            continue
        ch = ",".join(map(str, r["channels"]))
        lines.append(f"| {r['op']} | {d} | {ch} | {_cell(r.get('numba'))} | {_cell(r.get('triton'), False)} | "
                     f"{_cell(r.get('torchvision'))} |")  # fmt: skip
    return "\n".join(lines)


def flagged(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cases beyond 1 uint8 LSB / 1e-5 in float32 (in the output's dtype), or that failed; torchvision's
    float16 results (it computes in float16: 1.0 * 255.999 rounds to 256 and wraps to 0 in to_dtype) aside."""
    out = []
    limits = {str(k).removeprefix("torch."): v for k, v in LIMITS.items()}
    for case in cases:
        for col in COLUMNS:
            r = case.get(col)
            if case["dtype"] == "float16" and col == "torchvision":
                continue
            if r is not None and "skipped" not in r and ("error" in r or r["max"] > limits.get(r["unit"], float("inf"))):
                out.append({"column": col, **{k: v for k, v in case.items() if k not in COLUMNS}, "result": r})
        if "error" in case:
            out.append({"column": "torch", **case})
    return out


def machine() -> dict[str, Any]:
    import llvmlite.binding as llvm
    import numba

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "processor": platform.processor(), "machine": platform.machine(), "platform": platform.platform(),
        "cpu_name": llvm.get_host_cpu_name(), "cpu_features": llvm.get_host_cpu_features().flatten(),
        "torch": torch.__version__, "numba": numba.__version__, "triton": triton_version,
        "torchvision": getattr(sys.modules.get("torchvision"), "__version__", None), "threads": torch.get_num_threads(),
    }  # fmt: skip


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
        f.write(text)
    os.chmod(f.name, 0o644)  # NamedTemporaryFile creates 0600
    os.replace(f.name, path)


def readme_section(table: str, when: str) -> str:
    return f"""{START}
## Per-op reference table

Generated by `python -m benchmarks.op_reference` ({when}; a report, not a test). Each functional op of
the catalogue runs on B={B} images of {H}x{W} (channel counts C) with random per-sample magnitudes, nearest
and bilinear where it interpolates. Cells: max |difference| (uint8 outputs in LSB, float absolute) and, in
parentheses, the fraction of exactly equal values. triton runs under `TRITON_INTERPRET=1`. torchvision:
`torchvision.transforms.v2.functional` per sample with that sample's magnitudes (1 and 3 channels where
it accepts no more), leaving out pixels within 1 px of the image's border after interpolating geometric
ops; nearest may still pick the neighbouring pixel at a rounding tie, and torchvision computes float16
inputs in float16. Seeds and magnitudes of every case: `results/op_reference.json`.

{table}
{END}"""


def update_readme(table: str, when: str) -> None:
    text = README.read_text()
    section = readme_section(table, when)
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    write_atomic(README, text)


def load_torchvision():
    """``torchvision.transforms.v2.functional`` (skipping the fake-kernel registrations of its detection
    ops, which fail when the wheel was built for another torch), or None when it is not installed."""
    original = torch.library.register_fake
    torch.library.register_fake = lambda *args, **kwargs: lambda fn: fn
    try:
        import torchvision.transforms.v2.functional as tf
    except ImportError:
        return None
    finally:
        torch.library.register_fake = original
    return tf


TF = load_torchvision()


def main(argv: list[str] | None = None) -> None:
    """Run every op (or only the functional names in ``argv``: a quick look, nothing written)."""
    only = sys.argv[1:] if argv is None else argv
    specs, warnings = functional_ops()
    specs = [s for s in specs if not only or s.function in only]
    if TF is None:
        warnings.append("warning: torchvision is not installed: no torchvision column")
    cases = []
    t0 = time.perf_counter()
    for s in specs:
        for mode, dtype, c in cases_of(s):
            case = run_case(s, mode, dtype, c)
            cases.append(case)
            errors = [("torch", case.get("error"))] + [(col, (case.get(col) or {}).get("error")) for col in COLUMNS]
            warnings += [f"warning: {case['op']} {case['dtype']} C={c} {col}: {err[:200]}" for col, err in errors if err]
    for w in warnings:
        print(w, file=sys.stderr)
    rows, bad = summarize(cases), flagged(cases)
    table = render_table(rows)
    result = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.perf_counter() - t0, 1), "machine": machine(),
              "batch": [B, H, W], "warnings": warnings, "rows": rows, "flagged": bad, "cases": cases}  # fmt: skip
    if not only:
        write_atomic(RESULTS, json.dumps(result, indent=1) + "\n")
        update_readme(table, time.strftime("%Y-%m-%d") + f", torch {torch.__version__}")
    print(table)
    print(f"\n{len(bad)} case(s) beyond 1 uint8 LSB / 1e-5 float32, or failed" + (":" if bad else "."))
    for f in bad:
        what = f["result"].get("error", f"max {f['result'].get('max')}") if "result" in f else f["error"]
        print(f"- {f['column']}: {f['op']} {f['dtype']} {f['shape']} seed {f['seed']}: {what}")
    if not only:
        print(f"Written: {RESULTS.relative_to(HERE.parent)}, {README.relative_to(HERE.parent)} (section 'Per-op reference table')")


if __name__ == "__main__":
    main()
