"""Compile a batch of per-sample op calls into a Plan (see ``fastaug/plan.py``).

Rules (the documented difference from sequential torchvision): all geometric ops of a sample compose
into one resampling that runs first; color ops then run in order on the resampled image; erasing
runs after the color ops. A neighbourhood op (sharpness, blur) opens a new stage (it reads its neighbours
in the stage input), but SHARPNESS is folded in (``plan.Fold``: the samples that sharpen resume from a buffer of the
chain before it; not in a stage whose k = 0 op reads its input's neighbours, such as one a blur opened, and not in a
float64 image's Plan, whose split stages compute in float32 after the first); a uint8 image's
geometry fill is clamped into [0, 255] by the kernels (plan.Geometry); statistics ops
(contrast, autocontrast, equalize) get a reduction pass each. No host sync: everything is tensor ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fastaug.constants import cached, constant
from fastaug.ops import geometry as G
from fastaug.ops.calls import Call, ChannelsCall, ColorCall, DtypeCall, GeometricCall, NormalizeCall, RectCall
from fastaug.ops.catalogue import CHANNELS, FIXED_RADIUS, NEIGHBOURHOOD_OPS, RANDOM_OPS
from fastaug.plan import NUM_PARAMS, STAT_OPS, Epilogue, Fold, Geometry, Op, Plan, Stage


@dataclass
class _StageBuilder:
    codes: list = field(default_factory=list)  # [B] int32 tensors
    params: list = field(default_factory=list)  # [B,4] float32 tensors
    static: list = field(default_factory=list)  # tuple of possible codes per position
    dtype: torch.dtype = torch.float32  # params dtype (float64 for float64 images: exact gradients)
    taps: torch.Tensor | None = None  # GAUSSIAN_BLUR kernels of the op at k = 0
    kernel: torch.Tensor | None = None  # CONVOLVE kernels of the op at k = 0
    max_segments: int = 0  # SUPERPIXELS at k = 0
    segment_size: int = 0  # SUPERPIXELS: its segmentation size (0: full resolution)
    integral: bool = False  # the stage ends in the uint8 domain (set when the next stage opens)
    keys: list = field(default_factory=list)  # per position: [B] int64 keys of random ops, or None
    folds: list = field(default_factory=list)  # (position, integral) of each folded SHARPNESS (see plan.Fold)

    quantized: list = field(default_factory=list)  # per position: the op runs in uint8's range (params[..., 3])
    permutations: list = field(default_factory=list)  # per position: the call's permutation token (distinct codes), or None

    def add(self, code: torch.Tensor | int, params: torch.Tensor | None, q: bool, static: tuple[int, ...], keys=None,
            permutation: object | None = None) -> None:
        """Position k: op ``code`` ([B] or one for all), ``params`` [B, <= 3] (None: zeros), the uint8 flag ``q``;
        positions sharing a ``permutation`` token hold distinct codes per sample."""
        self.permutations.append(permutation)
        self.keys.append(keys)
        self.codes.append(code)
        self.params.append(params)
        self.quantized.append(q)
        self.static.append(tuple(sorted(set(static))))

    def _program(self, b: int, device: torch.device) -> torch.Tensor:
        """[B,K] int32: one stack (a code for every sample is a cached constant's view)."""
        rows = [constant(c, torch.int32, device).expand(b) if isinstance(c, int) else c for c in self.codes]
        return torch.stack(rows, 1).to(torch.int32)  # one op when every row is int32 already

    def _params(self, b: int, device: torch.device) -> torch.Tensor:
        """[B,K,NUM_PARAMS] in the Plan dtype: the magnitudes (differentiable), zero-padded, and the uint8 flags: one cat
        (each value rounded once to the Plan dtype, as one by one; a second op if some magnitudes are wider)."""
        width = NUM_PARAMS - 1
        pieces = []
        for p, q in zip(self.params, self.quantized, strict=True):
            if p is None:
                p = constant(0.0, self.dtype, device).expand(b, width)
            elif p.shape[1] > width:
                p = p[:, :width]
            pieces.append(p)
            if p.shape[1] < width:  # zero-padded by a constant's view: no op
                pieces.append(constant(0.0, self.dtype, device).expand(b, width - p.shape[1]))
            pieces.append(constant(1.0 if q else 0.0, self.dtype, device).expand(b, 1))
        return torch.cat(pieces, 1).to(self.dtype).view(b, len(self.params), NUM_PARAMS)

    def build(self, b: int, device: torch.device, geometry: Geometry | None, in_scale: float, out_size) -> Stage:
        if self.codes:
            program = self._program(b, device)
            params = self._params(b, device)
        else:
            program = constant(0, torch.int32, device).expand(b, 0)  # empty views of cached constants: no op
            params = constant(0.0, self.dtype, device).expand(b, 0, NUM_PARAMS)
        slots = tuple(k for k, s in enumerate(self.static) if any(int(o) in s for o in STAT_OPS))
        rounds = self._stat_rounds(slots)
        cuts = [0, *(k for k, _ in self.folds), len(self.codes)]
        part_rounds = [self._stat_rounds(tuple(k for k in slots if lo <= k < hi)) for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)]
        folds = tuple(Fold(k, integral, (part_rounds[i], part_rounds[i + 1])) for i, (k, integral) in enumerate(self.folds))
        radius = max([r for op, r in FIXED_RADIUS.items() if self.static and int(op) in self.static[0]], default=0)
        for t in (self.taps, self.kernel):
            if t is not None:
                radius = max(radius, (t.shape[-1] - 1) // 2)
        return Stage(
            program=program,
            params=params,
            in_scale=in_scale,
            geometry=geometry,
            out_size=out_size,
            stat_slots=slots,
            stat_rounds=rounds,
            slot_codes=tuple(self.static),
            radius=radius,
            taps=None if self.taps is None else self.taps.to(self.dtype),
            keys=self._keys(b, device),
            kernel=None if self.kernel is None else self.kernel.to(self.dtype),
            max_segments=self.max_segments,
            segment_size=self.segment_size,
            integral=self.integral,
            folds=folds,
        )

    def can_fold(self, static: tuple[int, ...]) -> bool:
        """A call that may hold ``static`` codes can run here as a folded SHARPNESS (see plan.Fold): SHARPNESS is its one
        neighbourhood op, no other neighbourhood op may run in this stage (its k = 0 op reads the stage input), and the
        maths is float32 (a float64 stage's later parts compute in float32 once split: folding would change values)."""
        if self.dtype != torch.float32:
            return False
        if {int(op) for op in NEIGHBOURHOOD_OPS} & set(static) != {int(Op.SHARPNESS)}:
            return False
        folded = {k for k, _ in self.folds}
        return not any(int(op) in codes for k, codes in enumerate(self.static) if k not in folded for op in NEIGHBOURHOOD_OPS)

    def _stat_rounds(self, slots: tuple[int, ...]) -> int:
        """The most statistics ops one sample may run: a slot each, but positions of one permutation hold each of its
        codes once, so they run at most as many statistics ops as their codes include (ColorJitter: CONTRAST, one)."""
        rounds, groups = 0, {}
        for k in slots:
            token = self.permutations[k]
            if token is None:
                rounds += 1
            else:
                codes, n = groups.get(id(token), (set(), 0))
                groups[id(token)] = (codes | {o for o in self.static[k] if o in {int(s) for s in STAT_OPS}}, n + 1)
        return rounds + sum(min(len(codes), n) for codes, n in groups.values())

    def _keys(self, b: int, device: torch.device) -> torch.Tensor | None:
        if all(k is None for k in self.keys):
            return None
        zero = torch.zeros(b, dtype=torch.int64, device=device)
        return torch.stack([zero if k is None else k.to(device=device, dtype=torch.int64) for k in self.keys], 1)


def _per_sample_code(call: ColorCall) -> tuple[torch.Tensor | int, tuple[int, ...]]:
    """The call's op code ([B], or an int for every sample) and the codes it may hold."""
    if isinstance(call.code, torch.Tensor):
        code, static = call.code, call.codes
    else:
        code, static = int(call.code), (int(call.code),)
    if call.applied is not None:  # 0-dim cached constants: one op (a Python number costs a scalar tensor each)
        dev = call.applied.device
        dtype = code.dtype if isinstance(code, torch.Tensor) else torch.int32
        value = code if isinstance(code, torch.Tensor) else constant(code, dtype, dev)
        code = torch.where(call.applied, value, constant(0, dtype, dev))
        static = tuple(set(static) | {int(Op.IDENTITY)})
    return code, static


def _check_channels(name: str, static: tuple[int, ...], c: int) -> None:
    bad = [op for op, allowed in CHANNELS.items() if int(op) in static and c not in allowed]
    if bad:
        counts = " or ".join(str(n) for n in CHANNELS[bad[0]])
        ops = ", ".join(op.name.lower() for op in bad)
        raise ValueError(f"{name} ({ops}) needs an image with {counts} channels, got {c} channels")


def _compose_geometry(
    calls: list[GeometricCall], b: int, c: int, size: tuple[int, int], domains: list[bool], geo_q: bool, device,
    pdtype: torch.dtype = torch.float32,
):
    """One Geometry for all geometric calls (in order), and the output size."""
    h, w = size
    window = None  # the first call's crop window, float64 [B,4]; None: the whole input
    clamp = False
    bilinear = False
    fill = None
    first = True
    displacement = None
    for n, (call, q) in enumerate(zip(calls, domains, strict=True)):
        if call.displacement is not None:
            if n != len(calls) - 1:
                later = ", ".join(c.name for c in calls[n + 1 :])
                raise ValueError(f"{call.name} must be the last geometric op of a pipeline (its displacement field is drawn on "
                                 f"the final output grid); {later} follows it: move it after them")  # fmt: skip
            d = call.displacement.to(pdtype)
            if call.applied is not None:
                d = torch.where(call.applied.view(b, 1, 1, 1), d, torch.zeros_like(d))
            displacement = d
        if first and call.window is not None:
            win = call.window.to(torch.float64)
            if call.applied is not None:
                whole = constant([0.0, 0.0, w - 1.0, h - 1.0], torch.float64, device).expand(b, 4)
                win = torch.where(call.applied.view(b, 1), win, whole)
            window = win
            clamp = call.resize
        elif not call.resize:
            clamp = False
        bilinear = bilinear or call.bilinear
        if call.fill is not None:
            f = call.fill.to(pdtype)
            if q != geo_q:
                f = f / 255.0 if q else f * 255.0
            if call.applied is not None:
                base = fill if fill is not None else torch.zeros_like(f)
                f = torch.where(call.applied.view(b, 1), f, base)
            fill = f
        if call.out_size is not None:
            h, w = call.out_size
        first = False
    if fill is not None and clamp:
        clamp = False
    matrix64, matrix = _compose_maps(calls, b, device, pdtype)
    if window is None:  # the whole input, cached contiguous in the Plan dtype: no op, CUDA-graph capturable
        box = [0.0, 0.0, size[1] - 1.0, size[0] - 1.0]
        window = cached(("window", *box, b, pdtype, torch.device(device)),
                        lambda: constant(box, pdtype, device).expand(b, 4).contiguous())
    geometry = Geometry(
        matrix=matrix,
        window=window.to(pdtype).contiguous(),
        clamp=clamp,
        bilinear=bilinear,
        fill=fill,
        quantize=geo_q,
        displacement=displacement,
    )
    return geometry, (h, w), matrix64


def _compose_maps(calls: list[GeometricCall], b: int, device, pdtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The product of the calls' maps (the identity where a call is not applied): float64 and ``pdtype`` [B,3,3].
    On CUDA without gradients to the maps: one Triton launch (``kernels.triton.geometry``) on a single row table;
    otherwise torch ops (affine maps built one by one, a masked matrix product per call)."""
    kernel = _geometry_kernels() if device.type == "cuda" else None
    if kernel is not None and not (torch.is_grad_enabled() and any(
        t.requires_grad for call in calls for t in (call.affine.tensors() if call.affine is not None else [call.matrix])
    )):
        return kernel.compose(*_map_rows(calls, b, device, kernel), pdtype)
    matrix = G.identity_view(b, device)
    for call in calls:
        m = call.pixel_map()
        if call.applied is not None:
            m = torch.where(call.applied.view(b, 1, 1), m, G.identity_view(b, device, m.dtype))
        matrix = matrix @ m.to(torch.float64)
    return matrix, matrix.to(pdtype)


def _map_rows(calls: list[GeometricCall], b: int, device, kernel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The row table [B,N,9], kinds [N] and applied mask [B,N] (None: all applied) of ``kernel.compose``: two ops."""
    pieces, kinds = [], []
    for call in calls:
        if call.affine is None:
            pieces.append(call.matrix.reshape(b, 9))
            kinds.append(kernel.MATRIX)
        else:
            pieces += call.affine.row()
            kinds.append(kernel.ROTATE if call.affine.rotate else kernel.AFFINE)
    rows = torch.cat(pieces, 1).view(b, len(calls), 9)
    applied = None
    if any(call.applied is not None for call in calls):
        every = constant(True, torch.bool, device).expand(b)
        applied = torch.stack([every if call.applied is None else call.applied for call in calls], 1)
    return rows, constant(kinds, torch.int32, device), applied


def _geometry_kernels():
    """``fastaug.kernels.triton.geometry``, or None without Triton."""
    try:
        from fastaug.kernels.triton import geometry
    except ImportError:
        return None
    return geometry


def compile_plan(calls: list[Call], shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Plan:
    """Compile op calls for a batch of shape [B,C,H,W] and dtype into a Plan."""
    b, c, h, w = shape
    domain_u8 = dtype == torch.uint8
    in_scale = 1.0
    calls = list(calls)
    if domain_u8 and calls and isinstance(calls[0], DtypeCall) and calls[0].dtype.is_floating_point and calls[0].scale:
        in_scale, domain_u8 = 1.0 / 255.0, False  # fold a leading ToDtype(float) into the read
        out_dtype_hint = calls[0].dtype
        calls = calls[1:]
    else:
        out_dtype_hint = None

    geo_calls = [x for x in calls if isinstance(x, GeometricCall)]
    geo_q = domain_u8
    geo_domains = []
    pdtype = torch.float64 if dtype == torch.float64 else torch.float32  # Plan tensors' dtype
    stages: list[_StageBuilder] = [_StageBuilder(dtype=pdtype)]
    rects, rect_phase = [], []
    normalize: NormalizeCall | None = None
    out_dtype = out_dtype_hint
    out_channels = c
    unscaled = False

    for call in calls:
        if normalize is not None and not isinstance(call, (RectCall, DtypeCall)):
            raise ValueError(f"Normalize must come after every color and geometric op; {call.name} follows it")
        if isinstance(call, GeometricCall):
            geo_domains.append(domain_u8)
            continue
        if isinstance(call, ColorCall):
            if unscaled:
                raise ValueError(f"{call.name} after to_dtype(scale=False): color ops need a scaled image")
            code, static = _per_sample_code(call)
            _check_channels(call.name, static, c)
            if any(int(op) in static for op in NEIGHBOURHOOD_OPS):  # k = 0 of a stage without geometry
                cur = stages[-1]
                if cur.codes or len(stages) > 1 or geo_calls:
                    integral = domain_u8 and not (len(stages) == 1 and in_scale != 1.0)
                    if cur.can_fold(static):  # a folded SHARPNESS: no stage boundary image
                        cur.folds.append((len(cur.codes), integral))
                    else:
                        cur.integral = integral
                        stages.append(_StageBuilder(dtype=pdtype))
                if int(Op.GAUSSIAN_BLUR) in static:
                    if call.taps is None:
                        raise ValueError(f"{call.name}: a gaussian blur call needs its kernels (taps)")
                    stages[-1].taps = call.taps
                if int(Op.CONVOLVE) in static:
                    if call.kernel is None:
                        raise ValueError(f"{call.name}: a convolution call needs its kernels")
                    stages[-1].kernel = call.kernel
                if int(Op.SUPERPIXELS) in static:
                    if call.max_segments < 1 or call.keys is None:
                        raise ValueError(f"{call.name}: a superpixels call needs max_segments and its keys")
                    stages[-1].max_segments = call.max_segments
                    stages[-1].segment_size = call.segment_size
            params = call.params
            if call.keys is None and any(int(op) in static for op in RANDOM_OPS):
                raise ValueError(f"{call.name}: a random op's call needs its per-sample keys")
            stages[-1].add(code, params, domain_u8, static, call.keys, call.permutation)
        elif isinstance(call, DtypeCall):
            target_float = call.dtype.is_floating_point
            if normalize is not None and not target_float:
                raise ValueError("to_dtype to an integer dtype after normalize")
            if call.scale and domain_u8 and target_float:
                if normalize is None:
                    stages[-1].add(
                        int(Op.TO_FLOAT),
                        None,
                        True,
                        (int(Op.TO_FLOAT),),
                    )
                    domain_u8 = False
            elif call.scale and not domain_u8 and not target_float:
                stages[-1].add(
                    int(Op.TO_UINT8),
                    None,
                    False,
                    (int(Op.TO_UINT8),),
                )
                domain_u8 = True
            elif not call.scale and domain_u8 and target_float:
                unscaled = True
            elif not call.scale and not domain_u8 and not target_float:
                raise ValueError("to_dtype(float -> uint8, scale=False) would truncate [0, 1] values to 0/1; use scale=True")
            out_dtype = call.dtype
        elif isinstance(call, NormalizeCall):
            normalize = call
        elif isinstance(call, RectCall):
            rects.append(call)
            rect_phase.append((2 if normalize is not None else 1, domain_u8))
        elif isinstance(call, ChannelsCall):
            out_channels = call.channels
        else:
            raise TypeError(f"unknown call {call!r}")

    geometry = None
    out_size = (h, w)
    if geo_calls:
        geometry, out_size, matrix64 = _compose_geometry(geo_calls, b, c, (h, w), geo_domains, geo_q, device, pdtype)
    else:
        matrix64 = G.identity_view(b, device)  # read-only (boxes and keypoints only read it)

    if out_dtype is None:
        out_dtype = torch.float32 if (normalize is not None and dtype == torch.uint8) else dtype
    if not out_dtype.is_floating_point and not domain_u8:
        stages[-1].add(int(Op.TO_UINT8), None, False, (int(Op.TO_UINT8),))
        domain_u8 = True
    if normalize is not None and not out_dtype.is_floating_point:
        raise ValueError(f"normalize needs a floating output dtype, got {out_dtype}")

    built = []
    for s, sb in enumerate(stages):
        built.append(sb.build(b, device, geometry if s == 0 else None, in_scale if s == 0 else 1.0, out_size if s == 0 else None))

    ep = Epilogue(out_dtype=out_dtype, out_channels=out_channels)
    if out_dtype.is_floating_point and domain_u8 and not unscaled:
        ep.out_scale = 1.0 / 255.0
    if normalize is not None:
        def per_sample(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=device, dtype=pdtype).expand(b, c).contiguous()

        if normalize.values is None:
            ep.mean, ep.std = per_sample(normalize.mean), per_sample(normalize.std)
        else:  # constants: the [B,C] tables cached per batch size (no op per call)
            key = ("normalize", normalize.values, b, c, pdtype, torch.device(device))
            ep.mean = cached((*key, "mean"), lambda: per_sample(normalize.mean))
            ep.std = cached((*key, "std"), lambda: per_sample(normalize.std))
    if rects:
        _fill_rects(ep, rects, rect_phase, b, c, domain_u8, device, pdtype)
    plan = Plan(stages=built, epilogue=ep, channels=c, out_size=out_size)
    plan.notes["matrix64"] = matrix64  # output index -> input index, float64 (boxes, keypoints)
    plan.notes["displacement"] = None if geometry is None else geometry.displacement  # elastic (boxes, keypoints)
    return plan


def _fill_rects(
    ep: Epilogue, rects: list[RectCall], phases, b: int, c: int, final_u8: bool, device, pdtype: torch.dtype = torch.float32
) -> None:
    boxes, values, phase = [], [], []
    for call, (ph, q) in zip(rects, phases, strict=True):
        r = call.rects.shape[1]
        boxes.append(call.rects.to(torch.int32))
        v = call.values.to(pdtype).expand(b, r, c)
        if ph == 1 and q:
            v = torch.floor(v)  # assigning into a uint8 image truncates (torchvision's erase)
        if ph == 1 and q != final_u8:  # painted in one domain, applied at the end in another
            v = v / 255.0 if q else torch.floor(v * 255.999)
        values.append(v)
        phase.append(torch.where(call.painted(), ph, 0).to(torch.int32))
    ep.rects = torch.cat(boxes, 1).contiguous()
    ep.rect_values = torch.cat(values, 1).contiguous()
    ep.rect_phase = torch.cat(phase, 1).contiguous()
