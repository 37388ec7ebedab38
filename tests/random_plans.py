"""Random Plans with per-sample programs, for comparing backends against the reference."""

from __future__ import annotations

import dataclasses
import math

import torch

from fastaug import autograd
from fastaug.ops.catalogue import RANDOM_OPS, dropout_mode
from fastaug.plan import NUM_PARAMS, Epilogue, Geometry, Op, Plan, Stage

PER_CHANNEL_OPS = (Op.BRIGHTNESS, Op.GAMMA, Op.INVERT, Op.POSTERIZE, Op.SOLARIZE, Op.AUTOCONTRAST, Op.EQUALIZE)


def allowed_ops(channels: int) -> list[Op]:
    ops = [Op.IDENTITY, *PER_CHANNEL_OPS]
    if channels in (1, 3):
        ops.append(Op.CONTRAST)
    if channels == 3:
        ops += [Op.SATURATION, Op.HUE, Op.GRAYSCALE, Op.RGB_SHIFT, Op.RGB_GAIN]
    return ops


def _param(op: Op, g: torch.Generator, uint8: bool) -> list[float]:
    u = float(torch.rand((), generator=g))
    bound = 255.0 if uint8 else 1.0
    if op in (Op.BRIGHTNESS, Op.CONTRAST, Op.SATURATION, Op.SHARPNESS):
        return [2.0 * u, 0.0, 0.0]
    if op == Op.HUE:
        return [u - 0.5, 0.0, 0.0]
    if op == Op.GAMMA:
        return [0.5 + 1.5 * u, 1.0 if u < 0.5 else 1.2, 0.0]
    if op == Op.POSTERIZE:
        return [float(int(u * 9) % 9), 0.0, 0.0]
    if op == Op.SOLARIZE:
        return [round(u * bound) if uint8 else u, 0.0, 0.0]
    if op == Op.GAUSSIAN_NOISE:  # mean, sigma, clip (float domain: clipped, so later ops see values in [0, 1])
        return [0.2 * u - 0.1, 0.3 * u, float(u < 0.6 or not uint8)]
    if op == Op.PIXEL_DROPOUT:  # probability, drop value (an integer in the uint8 domain), dropout_mode(per channel, channel)
        return [0.4 * u, round(bound * (1 - u)) if uint8 else 1 - u, dropout_mode(u < 0.5, int(u * 1000) % 4 - 1)]
    if op == Op.SALT_AND_PEPPER:
        return [0.3 * u, u, 0.0]
    if op == Op.DOWNSCALE:  # scale, mode (bit 0: bilinear down, bit 1: bilinear up)
        return [0.15 + 0.8 * u, float(int(4 * u) % 4), 0.0]
    if op == Op.FOG:  # density, scale, threshold
        return [u, 0.05 + u, 0.5 * u]
    if op == Op.RGB_SHIFT:  # (r, g, b) shifts, integers in the uint8 domain
        return [round(100 * u - 50), round(60 - 120 * u), 30.0] if uint8 else [0.4 * u - 0.2, 0.2 - 0.4 * u, 0.1]
    if op == Op.RGB_GAIN:
        return [2.0 * u, 1.5 - u, 0.7]
    if op == Op.MULTIPLICATIVE_NOISE:  # low, high, per channel
        return [0.5 + 0.5 * u, 1.0 + u, float(u > 0.5)]
    return [0.0, 0.0, 0.0]


def random_geometry(b: int, c: int, h: int, w: int, out: tuple[int, int], g: torch.Generator, uint8: bool,
                    moved: bool = False) -> Geometry:
    """A random per-sample geometry; ``moved``: with an elastic displacement (up to 1.5 px) half the time."""
    ho, wo = out
    m = torch.zeros(b, 3, 3, dtype=torch.float64)
    for i in range(b):
        ang = float(torch.rand((), generator=g) - 0.5) * 1.2
        s = 0.7 + 0.6 * float(torch.rand((), generator=g))
        sx, sy = w / wo * s, h / ho * s
        ca, sa = math.cos(ang), math.sin(ang)
        tx, ty = (torch.rand(2, generator=g, dtype=torch.float64) - 0.5) * 3
        cxo, cyo, cxi, cyi = (wo - 1) / 2, (ho - 1) / 2, (w - 1) / 2, (h - 1) / 2
        a = torch.tensor([[ca * sx, -sa * sx], [sa * sy, ca * sy]], dtype=torch.float64)
        m[i, :2, :2] = a
        m[i, 0, 2] = cxi + tx - a[0, 0] * cxo - a[0, 1] * cyo
        m[i, 1, 2] = cyi + ty - a[1, 0] * cxo - a[1, 1] * cyo
        m[i, 2] = torch.tensor([0.0, 0.0, 1.0])
        if i % 3 == 2:  # a mild perspective row
            m[i, 2, :2] = (torch.rand(2, generator=g, dtype=torch.float64) - 0.5) * 0.02
    clamp = bool(torch.rand((), generator=g) < 0.3)
    window = torch.tensor([[0.0, 0.0, w - 1.0, h - 1.0]]).repeat(b, 1)
    if torch.rand((), generator=g) < 0.5:
        window[:, 0] += 1
        window[:, 3] -= 1
    fill = None
    if torch.rand((), generator=g) < 0.7:
        fill = torch.rand(b, c, generator=g) * (255.0 if uint8 else 1.0)
        if uint8:
            fill = fill.round()
    geo = Geometry(
        matrix=m.float(),
        window=window,
        clamp=clamp,
        bilinear=bool(torch.rand((), generator=g) < 0.6),
        fill=fill,
        quantize=uint8,
    )
    if moved and torch.rand((), generator=g) < 0.5:
        geo.displacement = (torch.rand(b, ho, wo, 2, generator=g) - 0.5) * 3.0
    return geo


def random_program(b: int, k: int, ops: list[Op], g: torch.Generator, q: torch.Tensor, first=None):
    """program [B,K], params [B,K,4]; q [B,K] domain flags. ``first`` forces op 0 (e.g. SHARPNESS; a list: one of
    them per sample)."""
    prog = torch.zeros(b, k, dtype=torch.int32)
    params = torch.zeros(b, k, NUM_PARAMS)
    firsts = [first] if isinstance(first, Op) else first
    for i in range(b):
        for j in range(k):
            op = ops[int(torch.randint(len(ops), (), generator=g))]
            if j == 0 and firsts:
                r = (0 if i % 4 != 3 else 1) if len(firsts) == 1 else i % (len(firsts) + 1)  # some samples: a random op
                if r < len(firsts):
                    op = firsts[r]
            prog[i, j] = int(op)
            params[i, j, :3] = torch.tensor(_param(op, g, bool(q[i, j] > 0.5)))
    params[..., 3] = q
    return prog, params


def random_plan(
    x: torch.Tensor,
    seed: int,
    *,
    geometry: bool = True,
    stages: int = 1,
    ops_per_stage: int = 3,
    out_dtype: torch.dtype = torch.float32,
    normalize: bool = True,
    rects: int = 2,
    to_float_at: int | None = None,
    new_ops: bool = False,
) -> Plan:
    """A random Plan for input ``x`` (per-sample programs differ across the batch). ``new_ops``: the random ops join
    the ops, and the first op of later stages is SHARPNESS, GAUSSIAN_BLUR, CONVOLVE or DOWNSCALE per sample."""
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = x.shape
    uint8 = x.dtype == torch.uint8
    out = (h + int(torch.randint(-2, 3, (), generator=g)), w + int(torch.randint(-2, 3, (), generator=g))) if geometry else (h, w)
    ops = allowed_ops(c) + (list(RANDOM_OPS) if new_ops else [])
    plan_stages = []
    domain_u8 = uint8
    for s in range(stages):
        q = torch.full((b, ops_per_stage), 1.0 if domain_u8 else 0.0)
        if s == stages - 1 and to_float_at is not None and domain_u8:
            q[:, to_float_at:] = 0.0
        first = ([Op.SHARPNESS, Op.GAUSSIAN_BLUR, Op.CONVOLVE, Op.DOWNSCALE] if new_ops else Op.SHARPNESS) if s > 0 else None
        prog, params = random_program(b, ops_per_stage, ops, g, q, first=first)
        if s == stages - 1 and to_float_at is not None and domain_u8:
            prog[:, to_float_at] = int(Op.TO_FLOAT)
            domain_u8 = False
        codes = tuple(tuple(sorted({int(v) for v in prog[:, k].tolist()})) for k in range(ops_per_stage))
        stat_slots = tuple(k for k in range(ops_per_stage) if any(int(o) in codes[k] for o in (2, 11, 12)))
        geo = random_geometry(b, c, h, w, out, g, uint8, moved=new_ops) if (geometry and s == 0) else None
        extra = {}
        if new_ops:  # per-sample separable taps and 2-D kernels of radius 1 or 2, keys for the noise
            t = 3 + 2 * int(torch.randint(2, (), generator=g))
            extra["taps"] = torch.softmax(torch.randn(b, 2, t, generator=g), -1)
            extra["kernel"] = torch.randn(b, t, t, generator=g) / t
            extra["keys"] = torch.randint(0, 2**32, (b, ops_per_stage), generator=g, dtype=torch.int64)
            extra["radius"] = t // 2
        plan_stages.append(
            Stage(
                program=prog,
                params=params,
                geometry=geo,
                out_size=out if geo is not None else None,
                stat_slots=stat_slots,
                slot_codes=codes,
                **extra,
            )
        )
    ho, wo = out
    out_float = out_dtype.is_floating_point
    ep = Epilogue(out_dtype=out_dtype, out_channels=c, out_scale=(1 / 255 if (domain_u8 and out_float) else 1.0))
    if normalize and out_float:
        ep.mean = torch.rand(b, c, generator=g) * 0.5
        ep.std = 0.2 + torch.rand(b, c, generator=g)
    if rects:
        x0 = torch.randint(0, wo, (b, rects), generator=g)
        y0 = torch.randint(0, ho, (b, rects), generator=g)
        x1 = x0 + torch.randint(0, wo, (b, rects), generator=g)
        y1 = y0 + torch.randint(0, ho, (b, rects), generator=g)
        ep.rects = torch.stack([x0, y0, x1, y1], -1).to(torch.int32)
        ep.rect_phase = torch.randint(0, 3 if out_float else 2, (b, rects), generator=g).to(torch.int32)
        vals = torch.rand(b, rects, c, generator=g)
        ep.rect_values = (vals * 255).round() if (domain_u8 and not out_float) else vals
    return Plan(stages=plan_stages, epilogue=ep, channels=c, out_size=out)


def layouts(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same batch as contiguous, channels-last and non-contiguous tensors."""
    wide = torch.zeros(x.shape[:3] + (x.shape[3] * 2,), dtype=x.dtype)
    wide[..., ::2] = x
    return {
        "contiguous": x.contiguous(),
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "strided": wide[..., ::2],
    }


def statistics_plan(params: torch.Tensor, mean, std, rect_values, h: int, w: int) -> Plan:
    """Two samples, one stage: CONTRAST / AUTOCONTRAST / BRIGHTNESS / GAMMA in per-sample orders (two live
    statistics ops per sample: two extra backward passes), then rects before and after normalize."""
    program = torch.tensor([[int(Op.CONTRAST), int(Op.AUTOCONTRAST), int(Op.BRIGHTNESS)],
                            [int(Op.AUTOCONTRAST), int(Op.GAMMA), int(Op.CONTRAST)]], dtype=torch.int32)  # fmt: skip
    stage = Stage(program=program, params=params, stat_slots=(0, 1, 2))
    rects = torch.tensor([[[1, 1, 4, 3], [3, 2, 6, 6]], [[0, 0, 2, 8], [5, 4, 9, 6]]], dtype=torch.int32)
    phase = torch.tensor([[1, 2], [2, 1]], dtype=torch.int32)
    c = mean.shape[-1]
    ep = Epilogue(out_dtype=torch.float32, out_channels=c, mean=mean, std=std, rects=rects, rect_values=rect_values, rect_phase=phase)
    return Plan(stages=[stage], epilogue=ep, channels=c, out_size=(h, w))


def statistics_plan_magnitudes(c: int) -> list[torch.Tensor]:
    """params [2,3,4], mean [2,C], std [2,C], rect values [2,2,C] for :func:`statistics_plan`."""
    g = torch.Generator().manual_seed(11)
    params = torch.zeros(2, 3, NUM_PARAMS)
    params[0, :, 0] = torch.tensor([0.7, 0.0, 1.3])
    params[1, :, 0] = torch.tensor([0.0, 1.4, 1.2])
    params[1, 1, 1] = 0.9  # gamma gain
    mean = 0.3 + 0.3 * torch.rand(2, c, generator=g)
    std = 0.2 + 0.1 * torch.rand(2, c, generator=g)
    return [params, mean, std, torch.rand(2, 2, c, generator=g)]


def plan_to(plan: Plan, device: torch.device) -> Plan:
    """A copy of ``plan`` with every tensor moved to ``device``."""

    def move(obj):
        if isinstance(obj, torch.Tensor):
            return obj.to(device)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return dataclasses.replace(obj, **{f.name: move(getattr(obj, f.name)) for f in dataclasses.fields(obj)})
        if isinstance(obj, list):
            return [move(o) for o in obj]
        return obj

    return move(plan)


def random_plan_case(seed: int) -> tuple[Plan, torch.Tensor]:
    """A random Plan and its float input for gradient tests: 1, 3 or 4 channels, with or without geometry, one or two
    stages, erasing; the image converted from uint8 (k / 255) or tie-heavy (k / 4)."""
    g = torch.Generator().manual_seed(seed)
    c = (1, 3, 3, 4)[seed % 4]
    levels = 4 if seed % 2 else 255
    x = torch.randint(0, levels + 1, (3, c, 7 + seed % 3, 8 + seed % 2), generator=g).float() / levels
    plan = random_plan(x, seed, geometry=seed % 5 != 4, stages=1 + (seed % 3 == 2), ops_per_stage=3, rects=seed % 3)
    return plan, x


def plan_grads(plan, x: torch.Tensor, backend: str) -> dict:
    """Gradients of ``x`` and of every Plan tensor, keyed by (name, stage); PARAMS only in the magnitude columns (the
    factor of BRIGHTNESS..SHARPNESS, GAMMA's gain, posterize bits and solarize thresholds, which have zero gradient,
    the three values of RGB_SHIFT / RGB_GAIN)."""
    tensors = autograd.plan_tensors(plan)
    slots = [(n, s) for s in range(len(plan.stages)) for n in ("params", "matrix", "fill", "window", "taps", "kernel", "displacement")]
    slots += [("mean", -1), ("std", -1), ("rect_values", -1)]
    xx = x.clone().requires_grad_(True)
    leaves = [None if t is None else t.detach().clone().float().requires_grad_(True) for t in tensors]
    out = autograd.execute(autograd.with_tensors(plan, leaves), xx, backend)
    live = [i for i, t in enumerate(leaves) if t is not None]
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.device)  # the same on every device
    got = torch.autograd.grad(out, [xx] + [leaves[i] for i in live], g, allow_unused=True)
    res = {("x", 0): got[0]}
    for i, gi in zip(live, got[1:], strict=True):
        name, s = slots[i]
        if name == "params" and gi is not None:
            code = plan.stages[s].program.unsqueeze(-1).expand_as(gi)
            col = torch.arange(gi.shape[-1], device=gi.device).expand_as(gi)
            factor = (code >= int(Op.BRIGHTNESS)) & (code <= int(Op.SHARPNESS))
            first = factor | (code == int(Op.POSTERIZE)) | (code == int(Op.SOLARIZE))
            rgb = (code == int(Op.RGB_SHIFT)) | (code == int(Op.RGB_GAIN))  # a value per channel: columns 0..2
            gi = torch.where((first & (col == 0)) | ((code == int(Op.GAMMA)) & (col == 1)) | (rgb & (col < 3)), gi, 0.0)
        res[(name, s)] = gi
    return res


def assert_plan_grads_close(got: dict, ref: dict) -> None:
    """Every gradient of :func:`plan_grads` as the reference's: no NaN or inf, and ``|a - r| <= 1e-3 |r| + 1e-5`` in
    norm per tensor (the floor covers float noise around a zero gradient, e.g. a fill's ``1 - sum of weights``)."""
    for key, r in ref.items():
        a = got.get(key)
        if r is None or a is None:
            one = r if a is None else a
            assert one is None or one.abs().max() < 1e-5, key
            continue
        assert torch.isfinite(r).all() and torch.isfinite(a).all(), key
        err, scale = float((a.double() - r.double()).norm()), float(r.double().norm())
        assert err <= 1e-3 * scale + 1e-5, (key, err, scale)
