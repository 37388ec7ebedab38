"""Targets riding the image's Plan: masks (nearest), boxes (xyxy) and keypoints.

Masks are resampled by the same geometric calls with nearest sampling and fill 0 (CoarseDropout and
XYMasking paint ``fill_mask`` into their holes, PixelDropout ``mask_drop_value`` at its dropped pixels);
boxes and keypoints are mapped through the composed matrix in continuous coordinates (pixel i spans
[i, i+1)). Boxes are clipped to the output frame; degenerate ones are dropped together with their labels.
Keypoints outside the frame are kept and flagged not visible. Holes of CoarseDropout and XYMasking (rect
calls with a ``hole_filter``) then drop or shrink the boxes they hide (:func:`filter_boxes_by_holes`) and
flag the keypoints they cover (:func:`keypoints_outside_holes`).
"""

from __future__ import annotations

import dataclasses

import torch

from fastaug import engine
from fastaug.compiler import compile_plan
from fastaug.constants import constant
from fastaug.ops import geometry as G
from fastaug.ops.calls import Call, ColorCall, GeometricCall, RectCall
from fastaug.ops.catalogue import decode_dropout_mode


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
        elif isinstance(call, ColorCall) and call.mask_value is not None:  # PIXEL_DROPOUT: the same keys, the same pixels
            value = torch.full_like(call.params[:, 1:2], float(call.mask_value))
            every = decode_dropout_mode(call.params[:, 2:3])[0].to(call.params.dtype)  # per_channel kept, every mask channel
            mask_calls.append(dataclasses.replace(call, params=torch.cat([call.params[:, :1], value, every], 1)))
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


def _map_points(fwd: torch.Tensor, points: list[torch.Tensor], displacement=None) -> list[torch.Tensor]:
    """Each sample's points [N_i,2] through its continuous forward map ``fwd`` [B,3,3] (float64), on ``fwd``'s device
    (all samples at once: no host copy), then moved by :func:`_undisplace`; float64 results, split per sample."""
    sizes = [p.shape[0] for p in points]  # host shapes
    cat, sample = _cat_by_sample(points, fwd.device)
    m = fwd[sample]  # [N,3,3]
    x, y = cat[:, 0:1], cat[:, 1:2]
    h = m[:, :, 0] * x + m[:, :, 1] * y + m[:, :, 2]  # [N,3]: (X', Y', W')
    mapped = _undisplace(h[:, :2] / h[:, 2:3], sample, displacement)
    return list(mapped.split(sizes))


def _undisplace(points: torch.Tensor, sample: torch.Tensor, disp: torch.Tensor | None) -> torch.Tensor:
    """Elastic's approximate inverse (torchvision's): the displacement [B,Ho,Wo,2] at the point's pixel, subtracted."""
    if disp is None:
        return points
    h, w = disp.shape[1:3]
    ix = torch.floor(points[:, 0]).clamp(0, w - 1).long()
    iy = torch.floor(points[:, 1]).clamp(0, h - 1).long()
    return points - disp.detach()[sample, iy, ix].to(points.dtype)


def transform_boxes(boxes, labels, matrix64: torch.Tensor, out_size: tuple[int, int], min_size: float = 1e-3, displacement=None):
    """xyxy boxes per sample -> (boxes, labels) lists: corners mapped, clipped, degenerate dropped. ``displacement``
    [B,Ho,Wo,2]: an elastic distortion's (each corner moved by :func:`_undisplace`). The mapping runs on the matrix's
    device; dropping boxes (``min_size`` >= 0) reads which survive (a variable size: a device read on a GPU)."""
    b = matrix64.shape[0]
    boxes = _as_list(boxes, b, "bboxes", 4)
    labels = None if labels is None else _as_list(labels, b, "labels", None)
    for i, bx in enumerate(boxes):
        if labels is not None and labels[i].shape[0] != bx.shape[0]:
            raise ValueError(f"sample {i}: {bx.shape[0]} boxes but {labels[i].shape[0]} labels")
    order = constant([0, 1, 2, 1, 2, 3, 0, 3], torch.int64, matrix64.device)  # the 4 corners (x0 y0, x1 y0, x1 y1, x0 y1)
    corners = [bx.to(device=order.device, dtype=torch.float64).index_select(1, order).reshape(-1, 2) for bx in boxes]
    fwd = G.continuous_forward(matrix64)
    h, w = out_size
    bound = constant([float(w), float(h)], torch.float64, fwd.device)  # the frame: x in [0, W], y in [0, H]
    out_boxes, out_labels = [], []
    for bx, mapped, lab in zip(boxes, _map_points(fwd, corners, displacement), labels or [None] * b, strict=True):
        mapped = mapped.reshape(-1, 4, 2)
        lo = torch.minimum(torch.clamp(mapped.amin(1), min=0), bound)
        hi = torch.minimum(torch.clamp(mapped.amax(1), min=0), bound)
        out = torch.cat([lo, hi], 1).to(bx.dtype if bx.is_floating_point() else torch.float32).to(bx.device)
        if min_size < 0:  # nothing to drop: no read of the device
            out_boxes.append(out)
            out_labels.append(None if lab is None else lab.clone())  # fresh outputs, as when boxes are dropped
            continue
        keep = ((hi - lo) > min_size).all(1)
        out_boxes.append(out[keep.to(out.device)])
        out_labels.append(None if lab is None else lab[keep.to(lab.device)])
    return out_boxes, (out_labels if labels is not None else None)


def transform_keypoints(keypoints, matrix64: torch.Tensor, out_size: tuple[int, int], displacement=None):
    """[N,2] (x, y) per sample -> (keypoints, visible) lists; visible = inside the output frame. ``displacement``: as
    :func:`transform_boxes`. On the matrix's device, no device read."""
    b = matrix64.shape[0]
    kps = _as_list(keypoints, b, "keypoints", 2)
    h, w = out_size
    out, vis = [], []
    for kp, p in zip(kps, _map_points(G.continuous_forward(matrix64), kps, displacement), strict=True):
        vis.append(((p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < h)).to(kp.device))
        q = p.to(kp.dtype if kp.is_floating_point() else torch.float32).to(kp.device)
        out.append(q.clone() if q is p else q)  # outputs are not views of one base (a custom op's returns may not alias)
    return out, vis


def _hole_filters(calls: list[Call]) -> list[RectCall]:
    return [c for c in calls if isinstance(c, RectCall) and c.hole_filter is not None]


def _cat_by_sample(items: list[torch.Tensor], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample [N_i,K] tensors -> ([sum N_i,K] float64 on ``device``, [sum N_i] sample index); sizes are host shapes."""
    cat = torch.cat([t.to(device=device, dtype=torch.float64) for t in items], 0)
    sample = torch.cat([torch.full((t.shape[0],), i, dtype=torch.int64, device=device) for i, t in enumerate(items)])
    return cat, sample


def _visible_table(call: RectCall, out_size: tuple[int, int]) -> torch.Tensor:
    """The summed-area table [B,H+1,W+1] (int32, zero first row and column) of the pixels no painted hole of ``call``
    covers: ``table[b, y, x]`` = visible pixels in rows < y and columns < x. One [B,H,W] float32 temporary (the hole
    count per pixel, freed before the sums) besides the table: about 8 bytes per pixel at the peak, 4 after."""
    h, w = out_size
    rects, on = call.rects.to(torch.int64), call.painted()
    ys, xs = torch.arange(h, device=rects.device), torch.arange(w, device=rects.device)
    rows = (ys >= rects[..., 1:2]) & (ys < rects[..., 3:4]) & on[..., None]  # [B,R,H]
    cols = (xs >= rects[..., 0:1]) & (xs < rects[..., 2:3])  # [B,R,W]
    covered = torch.bmm(rows.transpose(1, 2).to(torch.float32), cols.to(torch.float32))  # [B,H,W] holes over each pixel
    del rows, cols
    table = torch.zeros(covered.shape[0], h + 1, w + 1, dtype=torch.int32, device=covered.device)
    table[:, 1:, 1:] = covered.eq_(0)  # 1.0 where visible (in place), copied into the table as int32
    del covered
    return table.cumsum_(2).cumsum_(1)  # in place: the zero first row and column stay zero


def _rect_count(table: torch.Tensor, s: torch.Tensor, y0, y1, x0, x1) -> torch.Tensor:
    """Visible pixels in rows [y0, y1) and columns [x0, x1) of sample ``s`` (broadcast index tensors)."""
    return table[s, y1, x1] - table[s, y0, x1] - table[s, y1, x0] + table[s, y0, x0]


def _visible_span(table: torch.Tensor, sample: torch.Tensor, lo, hi, a, b, along_y: bool):
    """First and last row (``along_y``: column) in [lo, hi) with a visible pixel in columns (rows) [a, b), per box ([N]
    each, from the summed-area ``table``; first = the line count and last = -1 when none)."""
    n_lines = table.shape[2 if along_y else 1] - 1
    lines, s = torch.arange(n_lines, device=table.device).view(1, -1), sample.view(-1, 1)
    a, b = a.view(-1, 1), b.view(-1, 1)
    if along_y:  # [N,L] visible pixels per column x in rows [a, b)
        count = _rect_count(table, s, a, b, lines, lines + 1)
    else:  # per row y in columns [a, b)
        count = _rect_count(table, s, lines, lines + 1, a, b)
    seen = (count > 0) & (lines >= lo.view(-1, 1)) & (lines < hi.view(-1, 1))
    return torch.where(seen, lines, n_lines).amin(1), torch.where(seen, lines, -1).amax(1)


def filter_boxes_by_holes(boxes: list[torch.Tensor], calls: list[Call], out_size: tuple[int, int]):
    """The output-frame xyxy boxes after the holes of each call with a ``hole_filter`` = (min_area, min_visibility),
    one call after the other (albumentations 2's BaseDropout: ``filter_bboxes_by_holes``). Returns per sample the
    boxes (same count, dtype and device) and a [N] bool ``keep``; selecting the kept boxes is the caller's.

    In a sample where the call painted at least one hole, a box of at least one whole pixel (its span
    ``int(x0)..int(x1)`` x ``int(y0)..int(y1)``, ``area`` pixels, ``visible`` of them under no hole) keeps iff
    ``visible > 0``, ``visible >= min_area`` and ``visible / area >= min_visibility``; a side that holes cut moves
    to the edge of the visible pixels (the bounding rectangle of the visible pixels, in whole pixels, as
    albumentations). Differences: sides not cut keep their sub-pixel coordinates (albumentations truncates every
    box of such a sample to whole pixels) and a box of no whole pixel is kept as it is (albumentations' 0 of 0
    visible pixels drops it). Tensor ops on the holes' device only: no host read.
    """
    filters = _hole_filters(calls)
    if not filters or not boxes:
        return list(boxes), [torch.ones(t.shape[0], dtype=torch.bool, device=t.device) for t in boxes]
    device = filters[0].rects.device
    h, w = out_size
    xyxy, sample = _cat_by_sample(boxes, device)
    keep = torch.ones_like(sample, dtype=torch.bool)
    for call in filters:
        min_area, min_visibility = call.hole_filter
        table = _visible_table(call, out_size)
        x0, y0, x1, y1 = (xyxy[:, k].clamp(0, (w, h)[k % 2]).to(torch.int64) for k in range(4))  # truncation (>= 0)
        x1, y1 = torch.maximum(x1, x0), torch.maximum(y1, y0)
        area = ((x1 - x0) * (y1 - y0)).to(torch.float64)
        visible = _rect_count(table, sample, y0, y1, x0, x1).to(torch.float64)
        ok = (visible > 0) & (visible >= min_area) & (visible / area.clamp(min=1.0) >= min_visibility)
        cut = call.painted().any(1)[sample] & (area > 0)  # the boxes this call judges
        keep &= ~cut | ok
        first_y, last_y = _visible_span(table, sample, y0, y1, x0, x1, along_y=False)
        first_x, last_x = _visible_span(table, sample, x0, x1, y0, y1, along_y=True)
        del table
        cut &= ok
        xyxy = torch.stack([
            torch.where(cut & (first_x > x0), first_x.to(torch.float64), xyxy[:, 0]),
            torch.where(cut & (first_y > y0), first_y.to(torch.float64), xyxy[:, 1]),
            torch.where(cut & (last_x < x1 - 1), (last_x + 1).to(torch.float64), xyxy[:, 2]),
            torch.where(cut & (last_y < y1 - 1), (last_y + 1).to(torch.float64), xyxy[:, 3]),
        ], 1)  # fmt: skip
    counts = [int(t.shape[0]) for t in boxes]
    out = [c.to(device=t.device, dtype=t.dtype) for c, t in zip(xyxy.split(counts), boxes, strict=True)]
    return out, [k.to(t.device) for k, t in zip(keep.split(counts), boxes, strict=True)]


def keypoints_outside_holes(keypoints: list[torch.Tensor], calls: list[Call]) -> list[torch.Tensor]:
    """Per sample, [N] bool on each keypoint's device: False where a painted hole of a call with a ``hole_filter``
    covers the (x, y) point (``x0 <= x < x1`` and ``y0 <= y < y1``, albumentations' ``filter_keypoints_in_holes``).
    Tensor ops only on the holes' device (no host read)."""
    filters = _hole_filters(calls)
    if not filters or not keypoints:
        return [torch.ones(t.shape[0], dtype=torch.bool, device=t.device) for t in keypoints]
    points, sample = _cat_by_sample(keypoints, filters[0].rects.device)
    x, y = points[:, 0:1], points[:, 1:2]
    inside = torch.zeros_like(sample, dtype=torch.bool)
    for call in filters:
        r = call.rects[sample].to(torch.float64)  # [N,R,4]
        hit = (x >= r[..., 0]) & (x < r[..., 2]) & (y >= r[..., 1]) & (y < r[..., 3]) & call.painted()[sample]
        inside |= hit.any(1)
    return [(~k).to(t.device) for k, t in zip(inside.split([int(t.shape[0]) for t in keypoints]), keypoints, strict=True)]
