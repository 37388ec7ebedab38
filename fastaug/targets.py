"""Targets riding the image's Plan: masks (nearest), boxes (xyxy) and keypoints.

Masks are resampled by the same geometric calls with nearest sampling and fill 0 (XYMasking paints
``fill_mask`` into them); boxes and keypoints are mapped through the composed matrix in continuous
coordinates (pixel i spans [i, i+1)). Boxes are clipped to the output frame; degenerate ones are
dropped together with their labels. Keypoints outside the frame are kept and flagged not visible.
"""

from __future__ import annotations

import dataclasses

import torch

from fastaug import engine
from fastaug.compiler import compile_plan
from fastaug.ops import geometry as G
from fastaug.ops.calls import Call, GeometricCall, RectCall


def transform_masks(masks: torch.Tensor, calls: list[Call], backend: str) -> torch.Tensor:
    """Masks [B,H,W] or [B,K,H,W] (any integer, bool or float dtype) through the geometric calls."""
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"mask must be a tensor, got {type(masks).__name__}")
    squeeze = masks.dim() == 3
    m = masks.unsqueeze(1) if squeeze else masks
    if m.dim() != 4:
        raise ValueError(f"mask must have shape [B,H,W] or [B,K,H,W], got {list(masks.shape)}")
    b, k = m.shape[:2]
    mask_calls: list[Call] = []
    for call in calls:
        if isinstance(call, GeometricCall):
            fill = None if call.fill is None else torch.zeros(b, k, device=m.device)
            mask_calls.append(dataclasses.replace(call, bilinear=False, fill=fill))
        elif isinstance(call, RectCall) and call.mask_value is not None:
            vals = torch.full((b, call.rects.shape[1], k), float(call.mask_value), device=m.device)
            mask_calls.append(dataclasses.replace(call, values=vals))
    values = m.to(torch.float32)
    plan = compile_plan(mask_calls, tuple(values.shape), torch.float32, m.device)
    out = engine.execute(plan, values, backend)
    out = out.round().to(masks.dtype) if not masks.dtype.is_floating_point else out.to(masks.dtype)
    return out[:, 0] if squeeze else out


def _as_list(x, b: int, name: str, width: int | None) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        if x.dim() < 2 or x.shape[0] != b:
            raise ValueError(f"{name} must be a list of B tensors or a tensor [B,N,...], got shape {list(x.shape)}")
        x = list(x)
    if not isinstance(x, (list, tuple)) or len(x) != b:
        raise ValueError(f"{name} must hold one entry per sample (B={b})")
    out = [torch.as_tensor(t) for t in x]
    if width is not None:
        for t in out:
            if t.dim() != 2 or t.shape[1] != width:
                raise ValueError(f"each {name} entry must have shape [N,{width}], got {list(t.shape)}")
    return out


def _map_points(fwd: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    p = pts.to(torch.float64)
    h = torch.cat([p, torch.ones_like(p[:, :1])], 1) @ fwd.T
    return h[:, :2] / h[:, 2:3]


def _undisplace(points: torch.Tensor, disp: torch.Tensor | None) -> torch.Tensor:
    """Elastic's approximate inverse (torchvision's): the displacement [Ho,Wo,2] at the point's pixel, subtracted."""
    if disp is None:
        return points
    h, w = disp.shape[:2]
    ix = torch.floor(points[:, 0]).clamp(0, w - 1).long()
    iy = torch.floor(points[:, 1]).clamp(0, h - 1).long()
    return points - disp[iy, ix].to(points.dtype)


def transform_boxes(boxes, labels, matrix64: torch.Tensor, out_size: tuple[int, int], min_size: float = 1e-3, displacement=None):
    """xyxy boxes per sample -> (boxes, labels) lists: corners mapped, clipped, degenerate dropped. ``displacement``
    [B,Ho,Wo,2]: an elastic distortion's (each corner moved by :func:`_undisplace`)."""
    b = matrix64.shape[0]
    boxes = _as_list(boxes, b, "bboxes", 4)
    labels = None if labels is None else _as_list(labels, b, "labels", None)
    fwd = G.continuous_forward(matrix64).cpu()
    h, w = out_size
    out_boxes, out_labels = [], []
    for i in range(b):
        bx = boxes[i]
        if labels is not None and labels[i].shape[0] != bx.shape[0]:
            raise ValueError(f"sample {i}: {bx.shape[0]} boxes but {labels[i].shape[0]} labels")
        x0, y0, x1, y1 = bx.to(torch.float64).cpu().unbind(1)
        corners = torch.stack(
            [torch.stack([x0, y0], 1), torch.stack([x1, y0], 1), torch.stack([x1, y1], 1), torch.stack([x0, y1], 1)], 1
        )
        mapped = _map_points(fwd[i], corners.reshape(-1, 2))
        mapped = _undisplace(mapped, None if displacement is None else displacement[i].detach().cpu()).reshape(-1, 4, 2)
        lo, hi = mapped.amin(1), mapped.amax(1)
        lo = torch.stack([lo[:, 0].clamp(0, w), lo[:, 1].clamp(0, h)], 1)
        hi = torch.stack([hi[:, 0].clamp(0, w), hi[:, 1].clamp(0, h)], 1)
        keep = ((hi - lo) > min_size).all(1)
        out_boxes.append(torch.cat([lo, hi], 1)[keep].to(bx.dtype if bx.is_floating_point() else torch.float32).to(bx.device))
        if labels is not None:
            out_labels.append(labels[i][keep.to(labels[i].device)])
    return out_boxes, (out_labels if labels is not None else None)


def transform_keypoints(keypoints, matrix64: torch.Tensor, out_size: tuple[int, int], displacement=None):
    """[N,2] (x, y) per sample -> (keypoints, visible) lists; visible = inside the output frame. ``displacement``: as
    :func:`transform_boxes`."""
    b = matrix64.shape[0]
    kps = _as_list(keypoints, b, "keypoints", 2)
    fwd = G.continuous_forward(matrix64).cpu()
    h, w = out_size
    out, vis = [], []
    for i in range(b):
        p = _undisplace(_map_points(fwd[i], kps[i].cpu()), None if displacement is None else displacement[i].detach().cpu())
        vis.append(((p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)).to(kps[i].device))
        out.append(p.to(kps[i].dtype if kps[i].is_floating_point() else torch.float32).to(kps[i].device))
    return out, vis
