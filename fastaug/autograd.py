"""Autograd through the engine: one ``torch.autograd.Function`` per Plan execution.

Magnitudes flow from the user's tensors through the call builders and the compiler into the Plan's
float tensors by differentiable torch ops. :class:`PlanFunction` takes those Plan tensors as inputs,

    per stage: ``params`` [B,K,4], ``geometry.matrix`` [B,3,3], ``geometry.fill`` [B,C], ``geometry.window`` [B,4],
    ``taps`` [B,2,T] (GAUSSIAN_BLUR's kernels), ``kernel`` [B,T,T] (CONVOLVE's), ``geometry.displacement``
    [B,Ho,Wo,2] (elastic);
    epilogue: ``mean``, ``std`` [B,C], ``rect_values`` [B,R,C],

and returns their gradients, so autograd carries them back to the user's magnitudes. Forward saves
only the input batch and these (small) Plan tensors; backward recomputes the stage inputs and runs
the backend's fused backward kernels stage by stage (``kernels/numba/backward.py``,
``kernels/triton/backward.py``), or torch autograd through ``kernels/reference.py`` (the ``torch``
backend, and the fallback for stages a fused backward does not cover): the ground truth.

Gradient semantics
------------------
* Float input only: a uint8 image carries no gradient, and a uint8 input with a magnitude that
  requires grad raises (uint8-domain ops truncate: zero gradient almost everywhere). Ops running in
  the uint8 domain of a float input (after ``to_dtype(uint8)``) have zero gradient, like ``floor``.
* Kinks follow torch: clamps into [0, 1] pass the gradient at their bounds (``torch.clamp``, as torchvision
  clamps; a pixel AUTOCONTRAST maps to exactly 1 keeps its gradient); HUE's max / min of r, g, b split a tie
  evenly (``torch.maximum`` / ``minimum``).
* GAMMA: a black pixel (v = 0) gets image gradient 0, not ``a * v^(a-1)`` = inf for a < 1 (which one black
  pixel turns into NaN once a later op multiplies it by 0, and a statistic spreads that over the sample).
* CONTRAST: through the factor and through the gray mean (every pixel). AUTOCONTRAST: through the
  per-channel min / max (shared evenly among tied pixels, as ``amin`` / ``amax``).
* Bilinear resampling: to the image, the fill and the 3x3 matrix (through the sampling coordinates:
  angle, translate, scale, shear, perspective points, crop boxes), and where coordinates are clamped
  into a resize window (resized crops: the crop box), to the window (``torch.minimum`` / ``maximum``'s
  rule: a coordinate equal to a bound sends half its gradient to each). Nearest: image and fill only.
* POSTERIZE, EQUALIZE: zero image gradient (piecewise constant); SOLARIZE: -1 / +1; with the
  straight-through flag (``params[..., 2] > 0.5``, set by ``straight_through=True`` of the
  functional ops, or for every such op by ``execute(..., straight_through=True)``) POSTERIZE,
  SOLARIZE, AUTOCONTRAST and EQUALIZE pass the gradient to their input unchanged.
* Random ops, at their own draws: GAUSSIAN_NOISE passes the image's gradient where the clamp keeps the value (all of
  it without clip), and to mean / sigma (float domain) as 1 / z; PIXEL_DROPOUT and SALT_AND_PEPPER pass it on kept
  pixels (the drop value gets the dropped ones'); MULTIPLICATIVE_NOISE scales it by the draw; FOG by (1 - alpha), and
  the density gets ``t * (bound - v)``.
* GAUSSIAN_BLUR / CONVOLVE (and sharpen, emboss, motion blur through their kernels): to the image through the
  reflected borders, and to the taps / kernel, so to sigma, alpha, lightness, strength; DOWNSCALE and SUPERPIXELS:
  to the image (through the interpolation weights / the segment means); elastic: to the image, the fill and the
  displacement.
* float16 / bfloat16 inputs and outputs: gradients are computed in float32, cast at the end.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass

import torch

from fastaug import engine
from fastaug.plan import Epilogue, Op, Plan, Stage, unfold

__all__ = ["PlanFunction", "StageGrads", "StageNeeds", "execute", "plan_tensors", "requires_grad", "with_tensors"]

_BACKWARD_MODULES = {"numba": "fastaug.kernels.numba.backward", "triton": "fastaug.kernels.triton.backward"}
_PER_STAGE = 7  # params, matrix, fill, window, taps, kernel, displacement
_EPILOGUE = 3  # mean, std, rect_values


@dataclass(frozen=True)
class StageNeeds:
    """Which gradients a stage backward must compute (``ctx.needs_input_grad``, per stage)."""

    src: bool = False
    params: bool = False
    matrix: bool = False
    fill: bool = False
    window: bool = False
    taps: bool = False
    kernel: bool = False
    displacement: bool = False
    mean: bool = False
    std: bool = False
    rect_values: bool = False

    def any(self) -> bool:
        return any(dataclasses.astuple(self))


@dataclass
class StageGrads:
    """Gradients of one stage's inputs (None where not asked)."""

    src: torch.Tensor | None = None
    params: torch.Tensor | None = None
    matrix: torch.Tensor | None = None
    fill: torch.Tensor | None = None
    window: torch.Tensor | None = None
    taps: torch.Tensor | None = None
    kernel: torch.Tensor | None = None
    displacement: torch.Tensor | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    rect_values: torch.Tensor | None = None


def plan_tensors(plan: Plan) -> list[torch.Tensor | None]:
    """The Plan's differentiable tensors, in :class:`PlanFunction`'s input order."""
    out: list[torch.Tensor | None] = []
    for st in plan.stages:
        geo = st.geometry
        out += [st.params] + ([None] * 3 if geo is None else [geo.matrix, geo.fill, geo.window]) + [st.taps, st.kernel]
        out.append(None if geo is None else geo.displacement)
    ep = plan.epilogue
    return out + [ep.mean, ep.std, ep.rect_values]


def with_tensors(plan: Plan, tensors: list[torch.Tensor | None]) -> Plan:
    """A copy of ``plan`` reading ``tensors`` (as :func:`plan_tensors` orders them)."""
    stages = []
    for s, st in enumerate(plan.stages):
        p, m, f, wn, tp, kn, dp = tensors[_PER_STAGE * s : _PER_STAGE * (s + 1)]
        geo = None if st.geometry is None else dataclasses.replace(st.geometry, matrix=m, fill=f, window=wn, displacement=dp)
        stages.append(dataclasses.replace(st, params=p, geometry=geo, taps=tp, kernel=kn))
    mean, std, rv = tensors[-_EPILOGUE:]
    ep = dataclasses.replace(plan.epilogue, mean=mean, std=std, rect_values=rv)
    return dataclasses.replace(plan, stages=stages, epilogue=ep)


def requires_grad(plan: Plan, x: torch.Tensor) -> bool:
    """True when autograd must record this execution."""
    if not torch.is_grad_enabled():
        return False
    return x.requires_grad or any(t is not None and t.requires_grad for t in plan_tensors(plan))


def execute(plan: Plan, x: torch.Tensor, backend: str = "auto", straight_through: bool = False) -> torch.Tensor:
    """:func:`fastaug.engine.execute`, differentiable when ``x`` or a Plan tensor requires grad (else
    exactly the engine call: inference pays nothing)."""
    if not requires_grad(plan, x):
        return engine.execute(plan, x, backend)
    if not x.is_floating_point():
        raise ValueError(
            "gradients need a float image: uint8 values are integers (fastaug's uint8 ops truncate, zero gradient); "
            "convert with to_dtype(img, torch.float32, scale=True) first"
        )
    if not plan.epilogue.out_dtype.is_floating_point:
        return engine.execute(plan, x, backend)  # an integer output carries no gradient
    name = engine.resolve_backend(backend, x.device)
    plan = unfold(plan)  # backward passes run neighbourhood ops at k = 0 of a stage without geometry only
    return PlanFunction.apply(_Spec(plan, name, straight_through), x, *plan_tensors(plan))


@dataclass(frozen=True)
class _Spec:
    plan: Plan  # structure (program, flags, sizes); its tensors are replaced by the Function's inputs
    backend: str
    straight_through: bool


class PlanFunction(torch.autograd.Function):
    """``out = execute(plan, x)`` with gradients for ``x`` and every Plan tensor (see the module doc)."""

    @staticmethod
    def forward(ctx, spec: _Spec, x: torch.Tensor, *tensors: torch.Tensor | None) -> torch.Tensor:
        plan = with_tensors(spec.plan, list(tensors))
        if spec.backend == "torch":
            out, tables = _reference_forward(plan, x, spec.straight_through), []
        else:
            out, tables = _fused_forward(plan, x, spec.backend)
        ctx.spec = spec
        ctx.n_tensors = len(tensors)
        # the input batch, the small Plan tensors and the statistics tables [B,K,C,2] (LUTs only where
        # EQUALIZE may run): nothing image-sized but the input
        ctx.save_for_backward(x, *tensors, *[t for pair in tables for t in pair])
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, *rest = ctx.saved_tensors
        tensors, flat = rest[: ctx.n_tensors], rest[ctx.n_tensors :]
        tables = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)] or None
        needs = ctx.needs_input_grad
        gx, gt = plan_backward(ctx.spec, x, list(tensors), grad, needs[1], list(needs[2:]), tables)
        return (None, gx, *gt)


# ----------------------------------------------------------------------------------------------
# orchestration (identical for every backend)


def _reference():
    return importlib.import_module("fastaug.kernels.reference")


def _reference_forward(plan: Plan, x: torch.Tensor, straight_through: bool) -> torch.Tensor:
    """The Plan in differentiable reference ops (statistics recomputed in the graph)."""
    ref = _reference()
    src = x
    for s, stage in enumerate(plan.stages):
        last = s == len(plan.stages) - 1
        stats, luts = engine.run_stage_stats(ref, src.detach(), stage, plan.channels)
        src = ref.forward_live(src, stage, stats, luts, plan.epilogue if last else None, straight_through)
    return ref.cast(src, plan.epilogue.out_dtype)


def _fused_forward(plan: Plan, x: torch.Tensor, backend: str):
    """:func:`fastaug.engine.execute`, keeping each stage's statistics tables (``luts`` None where no
    EQUALIZE may run: they are zeros, rebuilt in backward)."""
    mod = engine.load_backend(backend)
    src, tables = x, []
    for s, stage in enumerate(plan.stages):
        src, stats, luts = engine.run_stage(mod, src, stage, plan, s == len(plan.stages) - 1, x)
        tables.append((stats, luts if stage.may_run(Op.EQUALIZE, positions=stage.stat_slots) else None))
    return src, tables


def _stage_inputs(plan: Plan, x: torch.Tensor, backend: str, straight_through: bool, saved=None):
    """Every stage's input (recomputed) and its statistics tables (``saved``: from the forward)."""
    ref = _reference()
    mod = ref if backend == "torch" else engine.load_backend(backend)
    srcs, tables = [x], []
    for s, stage in enumerate(plan.stages):
        if saved is not None and saved[s][1] is not None:
            stats, luts = saved[s]
        elif saved is not None and not stage.may_run(Op.EQUALIZE, positions=stage.stat_slots):
            stats = saved[s][0]
            k = stage.program.shape[1]
            luts = torch.zeros(x.shape[0], k, plan.channels, 256, dtype=stats.dtype, device=x.device)  # the tables' dtype
        else:
            stats, luts = engine.run_stage_stats(mod, srcs[-1], stage, plan.channels)
        tables.append((stats, luts))
        if s == len(plan.stages) - 1:
            break
        if backend == "torch":
            srcs.append(ref.forward_live(srcs[-1], stage, stats, luts, None, straight_through))
        else:
            srcs.append(engine.run_stage(mod, srcs[-1], stage, plan, False, x, (stats, luts))[0])
    return srcs, tables


def reference_stage_backward(
    src: torch.Tensor,
    stage: Stage,
    stats: torch.Tensor,
    luts: torch.Tensor,
    epilogue: Epilogue | None,
    grad: torch.Tensor,
    needs: StageNeeds,
    straight_through: bool = False,
) -> StageGrads:
    """One stage's backward by torch autograd through ``kernels/reference.py`` (the ground truth)."""
    ref = _reference()
    geo = stage.geometry
    slots = {
        "src": src,
        "params": stage.params,
        "matrix": None if geo is None else geo.matrix,
        "fill": None if geo is None else geo.fill,
        "window": None if geo is None or not geo.clamp else geo.window,  # a validity window has no gradient
        "taps": stage.taps,
        "kernel": stage.kernel,
        "displacement": None if geo is None else geo.displacement,
        "mean": None if epilogue is None else epilogue.mean,
        "std": None if epilogue is None else epilogue.std,
        "rect_values": None if epilogue is None else epilogue.rect_values,
    }
    with torch.enable_grad():
        leaves = {k: (None if t is None else t.detach().requires_grad_(getattr(needs, k))) for k, t in slots.items()}
        if geo is not None:
            geo = dataclasses.replace(geo, matrix=leaves["matrix"], fill=leaves["fill"], displacement=leaves["displacement"])
            if leaves["window"] is not None:
                geo = dataclasses.replace(geo, window=leaves["window"])
        st = dataclasses.replace(stage, params=leaves["params"], geometry=geo, taps=leaves["taps"], kernel=leaves["kernel"])
        ep = None
        if epilogue is not None:
            ep = dataclasses.replace(epilogue, mean=leaves["mean"], std=leaves["std"], rect_values=leaves["rect_values"])
        out = ref.forward_live(leaves["src"], st, stats, luts, ep, straight_through)
        asked = [k for k, t in leaves.items() if t is not None and t.requires_grad]
        if not asked:
            return StageGrads()
        if not out.requires_grad:  # nothing asked depends on the output (e.g. only truncating ops)
            return StageGrads(**{k: torch.zeros_like(leaves[k]) for k in asked})
        got = torch.autograd.grad(out, [leaves[k] for k in asked], grad.to(out.dtype), allow_unused=True)
    return StageGrads(**{k: (torch.zeros_like(leaves[k]) if g is None else g) for k, g in zip(asked, got, strict=True)})


def _backward_module(backend: str):
    name = _BACKWARD_MODULES.get(backend)
    if name is None:
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def plan_backward(
    spec: _Spec, x: torch.Tensor, tensors: list, grad: torch.Tensor, need_x: bool, need_t: list[bool], saved_tables=None
):
    """Gradients of ``x`` and of the Plan tensors (None where not needed), stage by stage in reverse."""
    plan = with_tensors(spec.plan, tensors)
    nst = len(plan.stages)
    srcs, tables = _stage_inputs(plan, x.detach(), spec.backend, spec.straight_through, saved_tables)
    bwd = _backward_module(spec.backend)
    grads: list[torch.Tensor | None] = [None] * len(tensors)
    ep_need = need_t[-_EPILOGUE:]
    g = grad
    for s in range(nst - 1, -1, -1):
        stage = plan.stages[s]
        last = s == nst - 1
        earlier = need_x or any(need_t[: _PER_STAGE * s])
        p, m, f, wn, tp, kn, dp = need_t[_PER_STAGE * s : _PER_STAGE * (s + 1)]
        needs = StageNeeds(
            src=earlier, params=p, matrix=m, fill=f, window=wn, taps=tp, kernel=kn, displacement=dp,
            mean=last and ep_need[0], std=last and ep_need[1], rect_values=last and ep_need[2],
        )  # fmt: skip
        if not needs.any():
            continue
        ep = plan.epilogue if last else None
        stats, luts = tables[s]
        fn = reference_stage_backward
        if bwd is not None and bwd.supports(srcs[s], stage, ep):
            fn = bwd.stage_backward
        res = fn(srcs[s], stage, stats, luts, ep, g, needs, spec.straight_through)
        base = _PER_STAGE * s
        grads[base : base + _PER_STAGE] = res.params, res.matrix, res.fill, res.window, res.taps, res.kernel, res.displacement
        if last:
            grads[-3], grads[-2], grads[-1] = res.mean, res.std, res.rect_values
        g = res.src
    for i, t in enumerate(tensors):
        if grads[i] is not None:
            grads[i] = grads[i].to(t.dtype) if need_t[i] else None
    gx = None if not need_x or g is None else g.to(x.dtype)
    return gx, grads
