"""Op calls: what transforms and functional ops hand to the compiler (parameters only, no pixels).

Each call carries per-sample tensors and an ``applied`` mask [B]; ``record`` holds the functional name
and the per-sample kwargs that reproduce it, for replay listings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from fastaug.ops import geometry as G


@dataclass
class Call:
    name: str  # fastaug.functional name
    kwargs: dict = field(default_factory=dict)  # per-sample tensors (leading dim B) or static values
    applied: torch.Tensor | None = None  # [B] bool; None = every sample


@dataclass
class ColorCall(Call):
    code: torch.Tensor | int = 0  # [B] op codes or one code
    params: torch.Tensor | None = None  # [B, <= 3]: the op's arguments (absent trailing columns are zeros)
    codes: tuple[int, ...] = ()  # static: every code this call may produce
    rgb_only: bool = False  # needs C == 3 (C == 1 is identity)
    stat_channels_ok: tuple[int, ...] | None = None  # allowed channel counts (None: any)
    taps: torch.Tensor | None = None  # [B,2,T] separable kernels (x, y) of a GAUSSIAN_BLUR call, T odd
    keys: torch.Tensor | None = None  # [B] int64 per-sample keys of a random op's per-pixel draws
    kernel: torch.Tensor | None = None  # [B,T,T] per-sample correlation kernels of a CONVOLVE call, T odd
    max_segments: int = 0  # a SUPERPIXELS call: the most segments a sample may ask for
    segment_size: int = 0  # a SUPERPIXELS call: segmentation on a copy at most this large (0: full resolution)
    mask_value: float | None = None  # a PIXEL_DROPOUT call: painted into masks at the dropped pixels (None: untouched)
    # calls sharing this token hold distinct codes per sample (ColorJitter's order); not part of a call's value
    permutation: object | None = field(default=None, compare=False, repr=False)


@dataclass
class GeometricCall(Call):
    matrix: torch.Tensor | None = None  # [B,3,3] float64, output index -> input index of this op (or ``affine``)
    out_size: tuple[int, int] | None = None  # (H, W) after this op; None: unchanged
    bilinear: bool = False
    fill: torch.Tensor | None = None  # [B,C] in the image's value range; None: zero padding
    window: torch.Tensor | None = None  # [B,4] crop box in this op's input space (resized_crop)
    resize: bool = False  # clamp into the window (resize semantics)
    displacement: torch.Tensor | None = None  # [B,H,W,2] (dx, dy) input pixels per output pixel (elastic; the last geometric op)
    affine: G.AffineArgs | None = None  # instead of ``matrix``: an affine op's arguments (built on the device in one launch)

    def pixel_map(self) -> torch.Tensor:
        """[B,3,3] output index -> input index of this op (``matrix``, or built from ``affine`` by torch ops)."""
        return self.matrix if self.affine is None else self.affine.matrix()


@dataclass
class RectCall(Call):
    rects: torch.Tensor | None = None  # [B,R,4] int (x0, y0, x1, y1) half-open
    values: torch.Tensor | None = None  # [B,R,C] in the image's value range at this point
    active: torch.Tensor | None = None  # [B,R] bool
    mask_value: float | None = None  # value painted into masks (None: masks untouched)
    hole_filter: tuple[float, float] | None = None  # (min_area, min_visibility): the holes filter boxes and keypoints

    def painted(self) -> torch.Tensor:
        """[B,R] bool: the rectangles actually painted (active and applied), on the rects' device."""
        b, r = self.rects.shape[:2]
        active = self.active if self.active is not None else torch.ones(b, r, dtype=torch.bool, device=self.rects.device)
        return active if self.applied is None else active & self.applied.view(b, 1)


@dataclass
class NormalizeCall(Call):
    mean: torch.Tensor | None = None  # [C]
    std: torch.Tensor | None = None  # [C]
    values: tuple | None = None  # (mean, std) as tuples of numbers when they are constants (the Plan's [B,C] cached)


@dataclass
class DtypeCall(Call):
    dtype: torch.dtype = torch.float32
    scale: bool = True


@dataclass
class ChannelsCall(Call):
    """Keep the first ``channels`` channels at the output (rgb_to_grayscale with 1 output channel)."""

    channels: int = 1
