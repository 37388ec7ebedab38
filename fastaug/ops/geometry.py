"""Per-sample pixel maps of the geometric ops: 3x3 matrices from output pixel index to input pixel index.

All functions are batched torch code (differentiable in their magnitudes, no host sync). Conventions
follow torchvision v2: affine/rotate pivot on the image centre (or ``center`` in continuous pixel
coordinates, where pixel i spans [i, i+1)), affine's angle is clockwise and rotate's counter-clockwise,
perspective maps endpoints to startpoints in continuous coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastaug.constants import constant

NEAREST_RESIZE_EPS = 1e-3  # tie-break so that rint reproduces torch's floor(j * scale) for nearest resize


_EYE = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def identity(b: int, device: torch.device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """[B,3,3] identity maps (a fresh tensor: callers may write into it)."""
    return identity_view(b, device, dtype).clone()


def identity_view(b: int, device: torch.device, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """[B,3,3] identity maps as a view of a cached constant (no op; read-only)."""
    return constant(_EYE, dtype, device).expand(b, 3, 3)


def _assemble(m00, m01, m02, m10, m11, m12) -> torch.Tensor:
    """[B,3,3] affine maps from their six entries [B] (last row 0 0 1): two ops."""
    top = torch.stack([m00, m01, m02, m10, m11, m12], -1)
    last = constant([0.0, 0.0, 1.0], top.dtype, top.device).expand(top.shape[0], 3)
    return torch.cat([top, last], -1).view(-1, 3, 3)


def affine_matrix(
    angle: torch.Tensor,
    translate: torch.Tensor,
    scale: torch.Tensor,
    shear: torch.Tensor,
    size: tuple[int, int],
    center: torch.Tensor | None = None,
) -> torch.Tensor:
    """Inverse affine map (output index -> input index), torchvision's ``affine`` convention.

    angle, scale: [B] degrees / factor; translate, shear: [B,2] pixels / degrees; center: [B,2] or None.
    """
    h, w = size
    # rotation-scale-shear M = scale * [[a, b], [c, d]] (torchvision) has determinant scale^2; its inverse is
    # [[d, -b], [-c, a]] / scale = [u + tan(sx) v; v] / scale with u = (cos r, sin r), v = (-c, a)
    # = (-sin(r - sy), cos(r - sy)) / cos(sy): the trigonometry of all angles at once (few ops on a device)
    rad = torch.deg2rad(torch.stack([angle, angle - shear[:, 1], shear[:, 1], shear[:, 0]], -1))  # r, r - sy, sy, sx
    cos, sin = torch.cos(rad), torch.sin(rad)
    v = torch.stack([-sin[:, 1], cos[:, 1]], -1) / cos[:, 2:3]
    u = torch.stack([cos[:, 0], sin[:, 0]], -1)
    linear = torch.stack([u + torch.tan(rad[:, 3:4]) * v, v], 1) / scale.view(-1, 1, 1)  # [B,2,2] inverse
    middle = constant([(w - 1) * 0.5, (h - 1) * 0.5], angle.dtype, angle.device)
    # the pivot in pixel-index space (continuous centre - 0.5) and the point it moves to
    pivot = middle.expand(angle.shape[0], 2) if center is None else center - 0.5
    offset = pivot - (linear * (pivot + translate).unsqueeze(1)).sum(-1)  # [B,2]
    top = torch.cat([linear, offset.unsqueeze(-1)], -1).view(-1, 6)
    last = constant([0.0, 0.0, 1.0], top.dtype, top.device).expand(top.shape[0], 3)
    return torch.cat([top, last], -1).view(-1, 3, 3)


def rotate_matrix(angle: torch.Tensor, size: tuple[int, int], center: torch.Tensor | None = None) -> torch.Tensor:
    """Counter-clockwise rotation about the centre (torchvision's ``rotate``, expand=False)."""
    zeros = constant(0.0, angle.dtype, angle.device).expand(angle.shape[0], 2)  # cached constants' views: no op
    return affine_matrix(-angle, zeros, constant(1.0, angle.dtype, angle.device).expand(angle.shape), zeros, size, center)


@dataclass(frozen=True)
class AffineArgs:
    """The arguments of an affine op's map (torchvision's ``affine``; ``rotate``: its counter-clockwise ``rotate``,
    no translate / scale / shear), kept so that a device composes every map of a call in one launch (``compiler``)."""

    angle: torch.Tensor  # [B] degrees
    translate: torch.Tensor | None  # [B,2] pixels (None with rotate)
    scale: torch.Tensor | None  # [B] (None with rotate)
    shear: torch.Tensor | None  # [B,2] degrees (None with rotate)
    size: tuple[int, int]  # (H, W)
    center: torch.Tensor | None = None  # [B,2] continuous coordinates; None: the image centre
    rotate: bool = False

    def matrix(self) -> torch.Tensor:
        """[B,3,3] output index -> input index, the torch ops of :func:`affine_matrix` / :func:`rotate_matrix`."""
        if self.rotate:
            return rotate_matrix(self.angle, self.size, self.center)
        return affine_matrix(self.angle, self.translate, self.scale, self.shear, self.size, self.center)

    def tensors(self) -> list[torch.Tensor]:
        return [t for t in (self.angle, self.translate, self.scale, self.shear, self.center) if t is not None]

    def row(self) -> list[torch.Tensor]:
        """The row of ``fastaug.kernels.triton.geometry`` (views of [B, k] columns, nine in all; no op)."""
        b, (h, w) = self.angle.shape[0], self.size
        dt, dev = self.angle.dtype, self.angle.device
        zeros = constant(0.0, dt, dev).expand(b, 2)
        pivot = constant([w * 0.5, h * 0.5], dt, dev).expand(b, 2) if self.center is None else self.center
        if self.rotate:
            return [self.angle.view(b, 1), zeros, constant(1.0, dt, dev).expand(b, 1), zeros, pivot, zeros[:, :1]]
        return [self.angle.view(b, 1), self.translate, self.scale.view(b, 1), self.shear, pivot, zeros[:, :1]]


def safe_rotate_matrix(angle: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """albumentations' SafeRotate (output index -> input index): rotate counter-clockwise by ``angle`` [B]
    degrees and scale x and y separately so that the whole rotated image fills the frame.

    albumentations (cv2 pixel-index coordinates) builds the forward map ``dst = S (Rot (p - c) + (W'/2, H'/2))``
    with ``c = (W/2 - 0.5, H/2 - 0.5)``, ``Rot = [[cos, sin], [-sin, cos]]`` (cv2.getRotationMatrix2D),
    ``W' = int(H|sin| + W|cos|)``, ``H' = int(H|cos| + W|sin|)`` (truncated) and ``S = diag(W/W', H/H')``:
    the centre c lands on (W/2, H/2), half a pixel right of and below itself (so even angle 0 shifts the
    image by +0.5 px). This returns its inverse ``p = c + Rot^T (S^-1 dst - (W'/2, H'/2))``.
    """
    h, w = size
    rot = torch.deg2rad(angle.to(torch.float64))
    cos, sin = torch.cos(rot), torch.sin(rot)
    new_w = torch.floor(h * sin.abs() + w * cos.abs())  # int() of a positive number
    new_h = torch.floor(h * cos.abs() + w * sin.abs())
    kx, ky = new_w / w, new_h / h  # 1 / scale_x, 1 / scale_y
    cx, cy = w * 0.5 - 0.5, h * 0.5 - 0.5
    hx, hy = new_w * 0.5, new_h * 0.5
    m02 = cx - (cos * hx - sin * hy)
    m12 = cy - (sin * hx + cos * hy)
    return _assemble(cos * kx, -sin * ky, m02, sin * kx, cos * ky, m12)


def flip_matrix(b: int, size: tuple[int, int], horizontal: bool, device: torch.device) -> torch.Tensor:
    """[B,3,3] mirror maps, a view of a cached constant (no op; read-only)."""
    h, w = size
    m = [row[:] for row in _EYE]
    axis = 0 if horizontal else 1
    m[axis][axis] = -1.0
    m[axis][2] = (w - 1.0) if horizontal else (h - 1.0)
    return constant(m, torch.float64, device).expand(b, 3, 3)


def crop_matrix(top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Integer shift: output (j, i) reads input (j + left, i + top)."""
    one, zero = torch.ones_like(top), torch.zeros_like(top)
    return _assemble(one, zero, left, zero, one, top)


def resize_matrix(
    top: torch.Tensor, left: torch.Tensor, height: torch.Tensor, width: torch.Tensor, size: tuple[int, int], bilinear: bool
) -> torch.Tensor:
    """Crop box (top, left, height, width) resized to ``size`` = (H, W), torch ``interpolate`` sampling.

    bilinear: half-pixel centres (align_corners=False); nearest: torch's legacy ``floor(j * scale)``.
    """
    oh, ow = size
    sx, sy = width / ow, height / oh
    zero = torch.zeros_like(sx)
    if bilinear:
        tx, ty = left + 0.5 * sx - 0.5, top + 0.5 * sy - 0.5
    else:
        tx, ty = left - 0.5 + NEAREST_RESIZE_EPS, top - 0.5 + NEAREST_RESIZE_EPS
    return _assemble(sx, zero, tx, zero, sy, ty)


def homography(startpoints: torch.Tensor, endpoints: torch.Tensor) -> torch.Tensor:
    """[B,3,3] H with H(endpoint) = startpoint (continuous coordinates), from 4 point pairs [B,4,2]."""
    sp, ep = startpoints.to(torch.float64), endpoints.to(torch.float64)
    b = sp.shape[0]
    x, y = ep[..., 0], ep[..., 1]
    u, v = sp[..., 0], sp[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)  # [B,8,8]
    rhs = torch.cat([u, v], 1).unsqueeze(-1)
    solution, info = torch.linalg.solve_ex(a, rhs)  # no error check on the device (torch.linalg.solve would wait for it)
    coeffs = solution.squeeze(-1)
    if coeffs.device.type == "cpu":  # callers reject degenerate points first; this is the backstop
        if bool((info != 0).any()):
            raise ValueError("startpoints and endpoints define no perspective map (degenerate points)")
    else:  # the device rule (fastaug.validation): a degenerate map becomes the identity
        eye = constant([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], torch.float64, coeffs.device)
        coeffs = torch.where((info == 0).unsqueeze(-1), coeffs, eye)
    return torch.cat([coeffs, constant([1.0], coeffs.dtype, coeffs.device).expand(b, 1)], 1).view(b, 3, 3)


def perspective_matrix(startpoints: torch.Tensor, endpoints: torch.Tensor) -> torch.Tensor:
    """Index-space map: continuous = index + 0.5, so M = T(-0.5) H T(+0.5)."""
    hmat = homography(startpoints, endpoints)
    b = hmat.shape[0]
    shift_in = identity(b, hmat.device)
    shift_in[:, :2, 2] = 0.5
    shift_out = identity(b, hmat.device)
    shift_out[:, :2, 2] = -0.5
    return shift_out @ hmat @ shift_in


def continuous_forward(matrix: torch.Tensor) -> torch.Tensor:
    """Input->output map in continuous coordinates (for boxes and keypoints) from an index-space matrix."""
    b = matrix.shape[0]
    inv = torch.linalg.inv_ex(matrix.to(torch.float64)).inverse  # no error check: no device read (maps are invertible)
    half = identity(b, matrix.device)
    half[:, :2, 2] = 0.5
    unhalf = identity(b, matrix.device)
    unhalf[:, :2, 2] = -0.5
    return half @ inv @ unhalf


def random_perspective_points(
    u: torch.Tensor, size: tuple[int, int], distortion_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision RandomPerspective's corner jitter from uniforms u [B,8] in [0,1)."""
    h, w = size
    hw, hh = int(distortion_scale * (w // 2)) + 1, int(distortion_scale * (h // 2)) + 1
    b = u.shape[0]
    start = constant([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], torch.float64, u.device)
    j = torch.floor(u.to(torch.float64) * constant([hw, hh] * 4, torch.float64, u.device)).view(b, 4, 2)
    sign = constant([[1, 1], [-1, 1], [-1, -1], [1, -1]], torch.float64, u.device)
    end = start + sign * j
    return start.expand(b, 4, 2).clone(), end
