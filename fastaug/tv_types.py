"""torchvision v2 types in and out: ``tv_tensors.Image``, ``Video``, ``Mask``, ``BoundingBoxes``, ``KeyPoints``.

torchvision is never imported here: a ``tv_tensors`` value can only exist once the caller imported it, so
the types are looked up in ``sys.modules``. Every type comes back as the type it went in, with its
metadata (``format``, ``canvas_size`` updated to the output frame, ``clamping_mode``).

* ``Video`` ``[T,C,H,W]`` (one video) or ``[B,T,C,H,W]`` (a batch): every frame of a video gets the video's
  draws (its dataset index repeated for each frame); a record describes the flattened ``[B*T,C,H,W]`` batch.
* ``BoundingBoxes``, every format: the axis-aligned ones (XYXY, XYWH, CXCYWH) are mapped as xyxy boxes (the
  corners transformed, the bounding rectangle clipped to the frame); the rotated ones (XYWHR, CXCYWHR,
  XYXYXYXY) map their four corners (not clipped) and convert back to their format.
* ``KeyPoints`` ``[..., 2]``: mapped, kept when they leave the frame (as torchvision), in continuous coordinates
  as torchvision's affine / rotate / perspective map them; one difference: torchvision flips keypoints to
  ``W - 1 - x`` (pixel indices), fastaug to ``W - x`` (the flip is part of the one composed matrix).
* A nested structure (tuples, lists, dicts; torchvision v2's ``transform(image, target)``): every ``Image`` /
  ``Video`` leaf (else the first plain tensor) is the image; other plain tensors and non-tensors pass through.
  In a batch call (image ``[B,C,H,W]``) a list or tuple of B entries that does not hold the image gives one
  entry per sample (the usual detection batch ``(images, [target_0, ..., target_{B-1}])``); a ``Mask`` outside
  such a list is the batch's (leading dimension B). As in torchvision, no box is dropped in a structure
  (degenerate boxes stay, clipped; use ``SanitizeBoundingBoxes`` after): labels stay aligned.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch

from fastaug.ops.calls import Call
from fastaug.plan import Plan
from fastaug.targets import transform_boxes, transform_keypoints, transform_masks

_AXIS_ALIGNED = ("XYXY", "XYWH", "CXCYWH")


def tv_module():
    """``torchvision.tv_tensors`` when the caller imported it, else None."""
    return sys.modules.get("torchvision.tv_tensors")


def tv_kind(x: Any) -> str | None:
    """"Image", "Video", "Mask", "BoundingBoxes", "KeyPoints" for a tv_tensor, else None."""
    mod = tv_module()
    if mod is None or not isinstance(x, torch.Tensor):
        return None
    for name in ("Image", "Video", "Mask", "BoundingBoxes", "KeyPoints"):
        cls = getattr(mod, name, None)
        if cls is not None and isinstance(x, cls):
            return name
    return None


def plain(x: torch.Tensor) -> torch.Tensor:
    """The tensor without its tv_tensors subclass (no copy)."""
    return x.as_subclass(torch.Tensor) if type(x) is not torch.Tensor else x


def wrap_like(out: torch.Tensor, like: torch.Tensor, **meta) -> torch.Tensor:
    """``out`` as ``like``'s tv_tensors type (``meta`` overrides, e.g. ``canvas_size``); plain when ``like`` is."""
    if tv_kind(like) is None:
        return out
    return tv_module().wrap(out, like=like, **meta)


def video_batch(video: torch.Tensor, indices) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]:
    """A Video ``[T,C,H,W]`` / ``[B,T,C,H,W]`` -> (frames ``[B*T,C,H,W]``, indices repeated per frame, leading dims)."""
    v = plain(video)
    if v.dim() == 4:
        lead = (v.shape[0],)
        idx = None if indices is None else torch.as_tensor(indices).reshape(-1)
        if idx is not None and idx.numel() != 1:
            raise ValueError(f"indices of one video (a 4-D Video) must hold one index, got {idx.numel()}")
        frames_idx = torch.zeros(v.shape[0], dtype=torch.int64) if idx is None else idx.repeat(v.shape[0])
    elif v.dim() == 5:
        lead = tuple(v.shape[:2])
        idx = torch.arange(v.shape[0]) if indices is None else torch.as_tensor(indices)
        if idx.dim() != 1 or idx.shape[0] != v.shape[0]:
            raise ValueError(f"indices must hold one index per video ({v.shape[0]}), got shape {list(idx.shape)}")
        frames_idx = idx.repeat_interleave(v.shape[1])
    else:
        raise ValueError(f"a Video must have shape [T,C,H,W] or [B,T,C,H,W], got {list(video.shape)}")
    return v.reshape(-1, *v.shape[-3:]), frames_idx.to(v.device), lead


# ----------------------------------------------------------------------------------------------- boxes, keypoints


def _fmt(boxes: torch.Tensor) -> str:
    fmt = boxes.format
    return fmt.name if hasattr(fmt, "name") else str(fmt).upper()


def _to_xyxy(b: torch.Tensor, fmt: str) -> torch.Tensor:
    b = b.to(torch.float64)
    if fmt == "XYWH":
        return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1)
    if fmt == "CXCYWH":
        return torch.cat([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1)
    return b


def _from_xyxy(b: torch.Tensor, fmt: str) -> torch.Tensor:
    if fmt == "XYWH":
        return torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1)
    if fmt == "CXCYWH":
        return torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1)
    return b


def _cast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if like.is_floating_point():
        return values.to(like.dtype)
    return values.round().to(like.dtype)


def _signed_area(q: torch.Tensor) -> torch.Tensor:
    x, y = q[..., 0], q[..., 1]
    return (x * y.roll(-1, -1) - x.roll(-1, -1) * y).sum(-1)


def map_boxes(boxes: torch.Tensor, plan: Plan, i: int, drop: bool = False):
    """One sample's ``tv_tensors.BoundingBoxes`` [N,K] through sample ``i`` of ``plan`` -> (BoundingBoxes on the
    output canvas, [N] bool kept). ``drop``: degenerate axis-aligned boxes are removed (fastaug's keyword
    style); else every box stays (torchvision's)."""
    fmt, data = _fmt(boxes), plain(boxes)
    if data.dim() != 2:
        raise ValueError(f"BoundingBoxes must have shape [N,K] (one sample's boxes), got {list(boxes.shape)}")
    m, disp = plan.notes["matrix64"][i : i + 1], plan.notes["displacement"]
    disp = None if disp is None else disp[i : i + 1]
    h, w = plan.out_size
    if fmt in _AXIS_ALIGNED:
        xyxy = _to_xyxy(data, fmt)
        (out,), _ = transform_boxes([xyxy], None, m, plan.out_size, min_size=-1.0, displacement=disp)
        keep = ((out[:, 2:] - out[:, :2]) > 1e-3).all(1) if drop else torch.ones(out.shape[0], dtype=torch.bool, device=out.device)
        out = out[keep]
        values = _from_xyxy(out.to(torch.float64), fmt)
    else:
        from torchvision.transforms.v2 import functional as TF

        corners = TF.convert_bounding_box_format(boxes, new_format="XYXYXYXY")
        (pts,), _ = transform_keypoints([plain(corners).to(torch.float64).reshape(-1, 2)], m, plan.out_size, disp)
        pts = pts.reshape(-1, 4, 2)
        mirrored = _signed_area(pts) * _signed_area(plain(corners).to(torch.float64).reshape(-1, 4, 2)) < 0
        pts = torch.where(mirrored.view(-1, 1, 1), pts[:, [1, 0, 3, 2]], pts)  # a mirror keeps the corner order (torchvision)
        quad = tv_module().BoundingBoxes(pts.reshape(-1, 8), format="XYXYXYXY", canvas_size=(h, w))
        values = plain(TF.convert_bounding_box_format(quad, new_format=fmt))
        keep = torch.ones(data.shape[0], dtype=torch.bool, device=data.device)
    return wrap_like(_cast(values, data).to(data.device), boxes, canvas_size=(h, w)), keep


def map_keypoints(points: torch.Tensor, plan: Plan, i: int) -> torch.Tensor:
    """One sample's ``tv_tensors.KeyPoints`` [..., 2] through sample ``i`` of ``plan`` (all kept, as torchvision)."""
    data = plain(points)
    if data.shape[-1] != 2:
        raise ValueError(f"KeyPoints must have shape [..., 2], got {list(points.shape)}")
    disp = plan.notes["displacement"]
    (out,), _ = transform_keypoints(
        [data.reshape(-1, 2).to(torch.float64)], plan.notes["matrix64"][i : i + 1], plan.out_size, None if disp is None else disp[i : i + 1]
    )
    return wrap_like(_cast(out, data).reshape(data.shape).to(data.device), points, canvas_size=tuple(plan.out_size))


def map_box_list(boxes, plan: Plan, drop: bool):
    """Keyword style ``bboxes=``: one BoundingBoxes per sample (a list) or one BoundingBoxes (one sample)."""
    b = plan.notes["matrix64"].shape[0]
    if isinstance(boxes, torch.Tensor):
        if b != 1:
            raise ValueError(f"bboxes=: one BoundingBoxes goes with one image, got a batch of {b}: pass a list of {b} "
                             "BoundingBoxes, one per sample")  # fmt: skip
        return map_boxes(boxes, plan, 0, drop)
    if len(boxes) != b:
        raise ValueError(f"bboxes=: {len(boxes)} BoundingBoxes for a batch of {b} images (one per sample)")
    pairs = [map_boxes(bx, plan, i, drop) for i, bx in enumerate(boxes)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


# ----------------------------------------------------------------------------------------------- structures


@dataclass
class _Leaf:
    value: torch.Tensor
    sample: int | None  # the sample a per-sample target belongs to (None: the batch's)
    slot: list  # [container, key]: where the result goes


def _is_image_leaf(x) -> bool:
    return tv_kind(x) in ("Image", "Video")


def find_images(tree) -> list[torch.Tensor]:
    """Every Image / Video leaf of ``tree``; else the first plain tensor (torchvision v2's rule)."""
    images, first = [], []

    def visit(node):
        if isinstance(node, torch.Tensor):
            if _is_image_leaf(node):
                images.append(node)
            elif tv_kind(node) is None and not first:
                first.append(node)
        elif isinstance(node, (list, tuple)):
            for v in node:
                visit(v)
        elif isinstance(node, dict):
            for v in node.values():
                visit(v)

    visit(tree)
    return images or first


def _holds(node, targets: set[int]) -> bool:
    if id(node) in targets:
        return True
    if isinstance(node, (list, tuple)):
        return any(_holds(v, targets) for v in node)
    if isinstance(node, dict):
        return any(_holds(v, targets) for v in node.values())
    return False


def _rebuild(tree, fn, sample: int | None, batch: int | None, image_ids: set[int]):
    """A copy of ``tree`` with ``fn(leaf, sample)`` applied to every tensor leaf."""
    if isinstance(tree, torch.Tensor):
        return fn(tree, sample)
    if isinstance(tree, (list, tuple)):
        per_sample = batch is not None and sample is None and len(tree) == batch and not _holds(tree, image_ids)
        items = [_rebuild(v, fn, i if per_sample else sample, batch, image_ids) for i, v in enumerate(tree)]
        if isinstance(tree, tuple):
            return type(tree)(*items) if hasattr(tree, "_fields") else tuple(items)
        return items
    if isinstance(tree, dict):
        return type(tree)((k, _rebuild(v, fn, sample, batch, image_ids)) for k, v in tree.items())
    return tree


def apply_structure(tree, run, backend: str):
    """torchvision v2 style: ``run(image_batch) -> (out, calls, plan)`` on the structure's image, every target
    leaf moved along; returns the same structure with the same types."""
    images = find_images(tree)
    if not images:
        raise TypeError("the input holds no image: pass a tv_tensors.Image / Video or a plain image tensor")
    first = images[0]
    for other in images[1:]:
        if tuple(other.shape) != tuple(first.shape) or tv_kind(other) != tv_kind(first):
            raise ValueError(f"every image in one call must have the same type and shape, got {list(first.shape)} and {list(other.shape)}")
    kind = tv_kind(first)
    video = kind == "Video"
    batched = first.dim() == (5 if video else 4)
    if video and any(tv_kind(leaf) in ("BoundingBoxes", "KeyPoints") for leaf in _leaves(tree)):
        raise ValueError("BoundingBoxes / KeyPoints with a Video are not supported: pass the frames as an Image batch")
    out, calls, plan = run(first)
    outs = {id(first): out}
    for other in images[1:]:
        outs[id(other)] = run(other, calls)
    b = plan.notes["matrix64"].shape[0]
    image_ids = {id(im) for im in images}
    masks = _collect_masks(tree, calls, backend, b if batched else None, image_ids, batched, first, video)

    def fn(leaf, sample):
        if id(leaf) in outs:
            return outs[id(leaf)]
        kind = tv_kind(leaf)
        if kind == "Mask":
            return masks[id(leaf)]
        if kind in ("BoundingBoxes", "KeyPoints"):
            i = _sample_of(leaf, sample, batched)
            return map_boxes(leaf, plan, i)[0] if kind == "BoundingBoxes" else map_keypoints(leaf, plan, i)
        return leaf

    return _rebuild(tree, fn, None, b if batched else None, image_ids)


def _sample_of(leaf, sample: int | None, batched: bool) -> int:
    if not batched:
        return 0
    if sample is None:
        raise ValueError(
            f"{tv_kind(leaf)} in a batch call must be one per sample: put them in a list of B entries "
            "(e.g. (images, [target_0, ..., target_B-1]))"
        )
    return sample


def _leaves(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from _leaves(v)
    elif isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)


def _collect_masks(tree, calls: list[Call], backend: str, batch, image_ids, batched: bool, image, video: bool) -> dict:
    """Every Mask leaf of ``tree`` moved by ``calls``: batch masks in one call each, per-sample masks of one size and
    dtype packed along channels into one call (zeros for the other samples)."""
    found: list[_Leaf] = []

    def fn(leaf, sample):
        if tv_kind(leaf) == "Mask":
            found.append(_Leaf(leaf, sample, []))
        return leaf

    _rebuild(tree, fn, None, batch, image_ids)
    out: dict[int, torch.Tensor] = {}
    groups: dict[tuple, list[_Leaf]] = {}
    for leaf in found:
        m = plain(leaf.value)
        if video:
            lead = image.shape[:-3]
            if tuple(m.shape[: len(lead)]) != tuple(lead):
                raise ValueError(f"a Mask with a Video must start with the video's dimensions {list(lead)}, got {list(m.shape)}")
            frames = m.reshape(-1, *m.shape[len(lead) :])
            out[id(leaf.value)] = wrap_like(transform_masks(frames, calls, backend).reshape(*lead, *frames.shape[1:]), leaf.value)
        elif not batched or leaf.sample is None:
            batch_mask = m.unsqueeze(0) if not batched else m
            res = transform_masks(batch_mask, calls, backend)
            out[id(leaf.value)] = wrap_like(res[0] if not batched else res, leaf.value)
        else:
            if m.dim() not in (2, 3):
                raise ValueError(f"a per-sample Mask must have shape [H,W] or [K,H,W], got {list(m.shape)}")
            groups.setdefault((tuple(m.shape[-2:]), m.dtype, m.device), []).append(leaf)
    for (hw, dtype, device), leaves in groups.items():
        offsets, width = [], [0] * batch
        for leaf in leaves:
            k = 1 if leaf.value.dim() == 2 else leaf.value.shape[0]
            offsets.append(width[leaf.sample])
            width[leaf.sample] += k
        packed = torch.zeros(batch, max(max(width), 1), *hw, dtype=dtype, device=device)
        for leaf, o in zip(leaves, offsets, strict=True):
            m = plain(leaf.value)
            m3 = m.unsqueeze(0) if m.dim() == 2 else m
            packed[leaf.sample, o : o + m3.shape[0]] = m3
        moved = transform_masks(packed, calls, backend)
        for leaf, o in zip(leaves, offsets, strict=True):
            k = 1 if leaf.value.dim() == 2 else leaf.value.shape[0]
            res = moved[leaf.sample, o : o + k]
            out[id(leaf.value)] = wrap_like(res[0] if leaf.value.dim() == 2 else res, leaf.value)
    return out
