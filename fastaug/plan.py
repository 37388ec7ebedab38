"""The Plan: all a backend ever sees.

A batch of B samples, each with its own op sequence, compiles into a Plan: a list of
:class:`Stage` s (one fused pass each) and an :class:`Epilogue` (erasing, normalize, output dtype).
Every backend implements two primitives over one stage (see ``kernels/reference.py``)::

    reduce(src, stage, stats, luts, stop) -> Reduction  # statistics of each sample's chain before op stop[b]
    apply(src, stage, stats, luts, epilogue, out)       # run the stage, write `out`

and :mod:`fastaug.engine` orchestrates stages and statistics, identically for all backends. A stage with folded
SHARPNESS ops (:class:`Fold`) runs as such on a backend that declares ``FOLDS_SHARPNESS`` (the reference in
``apply_op``; Triton with two more primitives, ``fold_buffers`` and ``fold_fill``, between its statistics rounds); the
engine hands every other backend :func:`unfold`'s split stages.

``stop`` is an int k (every sample) or an integer tensor [B] of per-sample positions; a sample whose
stop lies outside [0, K) is skipped (its Reduction entries are unspecified, and should cost nothing).
A backend may compute only the fields the op at ``stop[b]`` reads (CONTRAST: ``gray_sum``;
AUTOCONTRAST / EQUALIZE: ``minimum``, ``maximum``, ``hist``) and leave the others zero. The engine
runs one reduction per *round*: round r stops every sample just before its r-th statistics op, so a
stage needs as many reduction passes as its busiest sample has statistics ops (ColorJitter: one),
not one per statistics slot.

Semantics (the contract every backend meets; the reference defines it in plain torch)
---------------------------------------------------------------------------------------
Working values are float32, or float64 in a stage whose input is float64 (as torchvision computes). That is
only the first stage of a Plan on a float64 image: ``engine.run_stage`` hands every later stage float32 working
values, so later stages compute in float32 (the output dtype stays float64). The Plan's own tensors (params,
matrix, window, fill, taps, kernel, displacement, mean / std, rect values) are float64 for a float64 image and
are read in the stage's working dtype; the statistics tables (``stats``: CONTRAST's gray mean, AUTOCONTRAST's
minima / maxima; ``luts``: EQUALIZE) are in that working dtype too on every backend (``engine.table_dtype``: float64
in a float64 stage, so AUTOCONTRAST's extremes are pixel values exactly; else float32), and so are a reduction's
minima / maxima (the gray sum itself is accumulated in float64). A value lives
in one of two *domains*: the uint8 domain (values are integers in [0, 255], bound 255, each op
truncates its result like torchvision's uint8 kernels) or the float domain (values in [0, 1], bound 1).
An op's domain is ``params[..., 3]`` (1.0 = uint8). For POSTERIZE, SOLARIZE, AUTOCONTRAST and
EQUALIZE, ``params[..., 2] > 0.5`` asks for a straight-through gradient (see ``fastaug.autograd``);
forward kernels ignore it.

Reading: ``v = float32(src[b, c, y, x]) * stage.in_scale``.

Geometry (stage 0 only, optional). For output pixel (x=j, y=i) of sample b:
``(X', Y', W') = matrix[b] @ (j + dx, i + dy, 1)``; ``X = X'/W'``, ``Y = Y'/W'`` (input pixel-index space), where
``(dx, dy) = displacement[b, i, j]`` (elastic distortions; 0 without a displacement).
If ``clamp``: X, Y are clamped into ``window[b] = (x_lo, y_lo, x_hi, y_hi)`` and a tap (u, v) is
valid iff it lies in the frame ``0<=u<=W-1, 0<=v<=H-1``. Otherwise a tap is valid iff it lies in the
frame and in the window. Nearest: ``u = rint(X), v = rint(Y)`` (round half to even); ``S`` = the tap's
value if valid else 0, ``m`` = 1 if valid else 0. Bilinear: ``u0 = floor(X)``, ``fx = X - u0`` (same for
y), the four taps weighted ``(1-fx)(1-fy), fx(1-fy), (1-fx)fy, fx*fy``; ``S`` = sum of weight*value over
valid taps, ``m`` = sum of weights over valid taps. Result: ``fill is None``: ``S``; nearest with fill:
``fill[b,c] if m < 0.5 else S``; bilinear with fill: ``(S - fill[b,c]) * m + fill[b,c]`` (with ``quantize`` the fill is
clamped into [0, 255] first: a uint8 image's values).
If ``geometry.quantize``: ``rint`` of the result.

Program: ops ``program[b, k]`` for k = 0..K-1 in order on each pixel's channel vector, codes in
:class:`Op`, each op's formula in ``fastaug.ops.catalogue``. Ops reading statistics (``STAT_OPS``) read
``stats[b, k]`` / ``luts[b, k]``, which the engine filled (only where sample b runs such an op at k) from
a ``reduce`` stopping sample b at k, before ``apply``. Neighbourhood ops (SHARPNESS, GAUSSIAN_BLUR,
CONVOLVE, DOWNSCALE, SUPERPIXELS) run only at k = 0 of a stage without geometry (elsewhere they are identities) and read the
stage input around the pixel: SHARPNESS its 3x3 stencil (border pixels unchanged); the one exception is a *folded*
SHARPNESS (``stage.folds``): at a fold's position (any k > 0, or k = 0 after the geometry) it reads the chain before
that position (geometry and ops 0..k-1) at its 3x3 neighbours in the stage's output frame (border pixels of that frame
unchanged): what a stage split there would read from the stage boundary (see :class:`Fold`, :func:`unfold`); GAUSSIAN_BLUR its
per-sample separable kernel ``taps[b]`` ([2, T]: x kernel, y kernel, centred, zero beyond the op's own
size; absent ``taps``: an identity) and CONVOLVE its per-sample ``kernel[b]`` ([T, T], centred), both
mirroring the image at its borders without repeating the edge. ``radius`` is the widest of these
neighbourhoods (static, set by the compiler).
DOWNSCALE reads the stage input anywhere (its resized copy, computed on the fly); SUPERPIXELS (segment means of a
SLIC segmentation) runs in torch: the engine applies it to the stage input before a backend's kernels, which see an
identity there (``fastaug.engine.prologue``).
Random ops (GAUSSIAN_NOISE, PIXEL_DROPOUT, SALT_AND_PEPPER, MULTIPLICATIVE_NOISE, FOG) draw per pixel from
``keys[b, k]`` and the pixel's (channel, row, column) in the stage's output, by the counter-based hash of
``fastaug.ops.counter`` (the same bits on every backend); without ``keys`` they are identities.

Epilogue (last stage only), per pixel after the program:
1. rects with phase 1 (``rects[b, r] = (x0, y0, x1, y1)``, half-open, output pixels): ``v = rect_values[b, r, c]``
2. ``v = v * out_scale``
3. if normalize: ``v = (v - mean[b, c]) / std[b, c]``
4. rects with phase 2: ``v = rect_values[b, r, c]``
5. store channels ``0..out_channels-1``, cast to the output dtype (uint8 output: ``rint`` then cast).
Later rects win over earlier ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from fastaug.ops import catalogue as _catalogue
from fastaug.ops.catalogue import Op

__all__ = ["NUM_PARAMS", "EPS_TO_UINT8", "Op", "STAT_OPS", "RGB_OPS", "Geometry", "Fold", "Stage", "Reduction", "Epilogue",
           "Plan", "unfold"]

NUM_PARAMS = 4  # params[..., :3] are per-op values, params[..., 3] the domain flag


# Program op codes and the lists derived from the catalogue (the single source; see each op's ``math`` there).
STAT_OPS, RGB_OPS = _catalogue.STAT_OPS, _catalogue.RGB_OPS
EPS_TO_UINT8 = 255.999  # torchvision's float -> uint8 scale: 255 + 1 - 1e-3


@dataclass
class Geometry:
    """One resampling per sample: output pixel index -> input pixel index."""

    matrix: torch.Tensor  # [B,3,3] float32
    window: torch.Tensor  # [B,4] float32 (x_lo, y_lo, x_hi, y_hi), input pixel-index space
    clamp: bool  # True: clamp coordinates into the window (resize semantics)
    bilinear: bool  # False: nearest
    fill: torch.Tensor | None  # [B,C] float32 in the geometry's domain (quantize: clamped into [0, 255]); None: zero padding
    quantize: bool  # rint the result (uint8 domain)
    displacement: torch.Tensor | None = None  # [B,Ho,Wo,2] per output pixel (dx, dy), added before the matrix (elastic)


@dataclass(frozen=True)
class Fold:
    """A SHARPNESS folded into a stage at ``position`` instead of opening the next stage there (static).

    A stage may hold several (never in a stage whose k = 0 op reads its neighbours). A backend that runs folds writes,
    for the samples whose op at ``position`` is SHARPNESS only, the chain before it into a buffer that the rest of
    their chain resumes from (the Triton kernels: ``fold_fill_kernel``); the other samples run the stage in one pass,
    so no stage boundary image is written or read for them. :func:`unfold` splits the stage at every fold: the same
    values (a split intermediate holds exactly the chain's values: in the uint8 domain integers in [0, 255]), for
    backends and backward passes that run neighbourhood ops only at k = 0 of a stage without geometry."""

    position: int  # k of the folded op
    integral: bool  # the part before ``position`` ends in the uint8 domain (its split intermediate / buffer may be uint8)
    rounds: tuple[int, int]  # the statistics rounds of the parts before and from ``position`` (up to the next fold)


@dataclass
class Stage:
    """One fused pass: optional geometry, then a per-sample program of pixel ops."""

    program: torch.Tensor  # [B,K] int32 op codes (K may be 0)
    params: torch.Tensor  # [B,K,NUM_PARAMS] float32
    in_scale: float = 1.0  # value read = src * in_scale
    geometry: Geometry | None = None
    out_size: tuple[int, int] | None = None  # (H, W) of this stage's output; None: input size
    stat_slots: tuple[int, ...] = ()  # op positions k where some sample may run a statistics op
    stat_rounds: int | None = None  # the most statistics ops one sample may run here (static; None: len(stat_slots))
    slot_codes: tuple[tuple[int, ...], ...] | None = None  # per k, the op codes that may occur (None: any)
    radius: int = 0  # the widest neighbourhood an op at k = 0 may read (informational: kernels size by taps / kernel)
    taps: torch.Tensor | None = None  # [B,2,T] (T odd) separable kernels of GAUSSIAN_BLUR at k = 0
    keys: torch.Tensor | None = None  # [B,K] int64 32-bit keys of per-pixel random ops (0 elsewhere)
    kernel: torch.Tensor | None = None  # [B,T,T] (T odd) per-sample correlation kernels of CONVOLVE at k = 0
    max_segments: int = 0  # SUPERPIXELS at k = 0: the most segments a sample may ask for (static)
    segment_size: int = 0  # SUPERPIXELS: segment a copy whose larger side is at most this (0: full resolution)
    integral: bool = False  # its output values are integers in [0, 255] (uint8 domain at the end): uint8 holds them
    folds: tuple[Fold, ...] = ()  # SHARPNESS ops folded in, by position (see Fold)

    def rounds(self) -> int:
        """Reduction rounds the stage needs: the most statistics ops one sample may run in it (static)."""
        return len(self.stat_slots) if self.stat_rounds is None else min(self.stat_rounds, len(self.stat_slots))

    def codes_at(self, k: int) -> tuple[int, ...]:
        """Op codes that may occur at position k (static: backends specialise on it)."""
        return tuple(int(o) for o in Op) if self.slot_codes is None else self.slot_codes[k]

    def parts(self) -> list[tuple[int, int, int]]:
        """(lo, hi, rounds) of each part between folds (positions lo <= k < hi; its statistics rounds); without folds one
        part, the whole program."""
        k_total = self.program.shape[1]
        if not self.folds:
            return [(0, k_total, self.rounds())]
        cuts = [0, *(f.position for f in self.folds), k_total]
        rounds = [f.rounds[0] for f in self.folds] + [self.folds[-1].rounds[1]]
        return list(zip(cuts[:-1], cuts[1:], rounds, strict=True))

    def may_run(self, *ops: Op, positions=None) -> bool:
        """One of ``ops`` may occur at one of ``positions`` (default: every position), by :meth:`codes_at` (static)."""
        positions = range(self.program.shape[1]) if positions is None else positions
        return any(int(op) in self.codes_at(k) for k in positions for op in ops)


@dataclass
class Reduction:
    """Raw statistics of each sample's chain before its stop (see ``reduce``; zeros where not asked)."""

    gray_sum: torch.Tensor  # [B] float64: sum over pixels of the gray value (C==3: trunc in uint8 domain) or of v (C==1)
    minimum: torch.Tensor  # [B,C] per channel, in the working dtype (float64 in a float64 stage, else float32)
    maximum: torch.Tensor  # [B,C] per channel, in the working dtype
    hist: torch.Tensor  # [B,C,256] int64 of the uint8 value (uint8 domain: v; float: floor(v*255.999))


@dataclass
class Epilogue:
    """Erasing, normalize and the output cast, applied by the last stage."""

    out_dtype: torch.dtype
    out_channels: int
    out_scale: float = 1.0
    mean: torch.Tensor | None = None  # [B,C] float32
    std: torch.Tensor | None = None  # [B,C] float32
    rects: torch.Tensor | None = None  # [B,R,4] int32 (x0, y0, x1, y1) half-open
    rect_values: torch.Tensor | None = None  # [B,R,C] float32
    rect_phase: torch.Tensor | None = None  # [B,R] int32: 0 off, 1 before normalize, 2 after


@dataclass
class Plan:
    """Stages run in order; stage s>0 reads stage s-1's float32 output."""

    stages: list[Stage]
    epilogue: Epilogue
    channels: int
    out_size: tuple[int, int]
    notes: dict = field(default_factory=dict)


def _split(stage: Stage) -> list[Stage]:
    """``stage`` as the stages a split at each of its folds would make (views of its tensors: no device work)."""
    if not stage.folds:
        return [stage]
    codes = stage.slot_codes if stage.slot_codes is not None else (tuple(int(o) for o in Op),) * stage.program.shape[1]
    parts = []
    for i, (lo, hi, rounds) in enumerate(stage.parts()):
        first, last = i == 0, i == len(stage.folds)
        common = dict(
            program=stage.program[:, lo:hi], params=stage.params[:, lo:hi],
            stat_slots=tuple(s - lo for s in stage.stat_slots if lo <= s < hi), stat_rounds=rounds, slot_codes=codes[lo:hi],
            keys=None if stage.keys is None else stage.keys[:, lo:hi],
            integral=stage.integral if last else stage.folds[i].integral, folds=(),
        )  # fmt: skip
        if first:  # the geometry, in_scale and output size; no neighbourhood op at k = 0 (none in a folded stage)
            parts.append(dataclasses.replace(stage, radius=0, **common))
        else:
            parts.append(Stage(radius=_catalogue.FIXED_RADIUS[Op.SHARPNESS], **common))
    return parts


def unfold(plan: Plan) -> Plan:
    """``plan`` with every folded SHARPNESS (:class:`Fold`) opening a stage again: neighbourhood ops only at k = 0 of
    stages without geometry, as the numba backend and every backward pass run them. The same values; views only."""
    if not any(st.folds for st in plan.stages):
        return plan
    stages = [part for st in plan.stages for part in _split(st)]
    return dataclasses.replace(plan, stages=stages)


# ops whose backward the fused kernels do not cover yet: stages with them take the reference's (torch autograd)
_FIRST_OP_REFERENCE = (Op.GAUSSIAN_BLUR, Op.CONVOLVE, Op.DOWNSCALE, Op.SUPERPIXELS)


def reference_backward(stage: Stage, fused_random: bool = False, fused_neighbourhood: bool = False) -> bool:
    """True when this stage's backward must be the reference's: GAUSSIAN_BLUR, CONVOLVE, DOWNSCALE or SUPERPIXELS at k = 0 of a
    stage without geometry, a random op with keys (unless the backend's backward covers them: ``fused_random``; the
    blur, the convolution and downscale: ``fused_neighbourhood``), or an elastic displacement."""
    k = stage.program.shape[1]
    first = [op for op in _FIRST_OP_REFERENCE if not (fused_neighbourhood and op in (Op.GAUSSIAN_BLUR, Op.CONVOLVE, Op.DOWNSCALE))]
    if k > 0 and stage.geometry is None and any(_may_run(stage, 0, op) for op in first):
        return True
    if not fused_random and stage.keys is not None and any(_may_run(stage, i, op) for op in _catalogue.RANDOM_OPS for i in range(k)):
        return True
    return stage.geometry is not None and stage.geometry.displacement is not None


def _may_run(stage: Stage, k: int, op: Op) -> bool:
    """Op ``op`` may run at position k: the static ``slot_codes``; without them, the program itself when it lives on
    the CPU (reading it costs nothing there), else yes."""
    if stage.slot_codes is not None:
        return int(op) in stage.slot_codes[k]
    if stage.program.device.type == "cpu":
        return bool((stage.program[:, k] == int(op)).any())
    return True
