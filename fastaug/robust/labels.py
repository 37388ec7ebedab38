"""A robustness analysis's labels: their kind, subsets of them, and the augmentation that moves them with the image.

Kinds: ``"class"`` (a tensor [N] of class ids), ``"probabilities"`` (a float tensor [N, K]), ``"mask"`` (a tensor
[N, H, W] of the images' size: segmentation masks, resampled nearest), ``"boxes"`` (a list of N tensors [n, 4], xyxy
pixels: mapped, clipped, degenerate ones dropped) and ``"keypoints"`` (a list of N tensors [n, 2], (x, y) pixels:
mapped; points that leave the frame are kept). Class labels and probabilities do not move.
"""

from __future__ import annotations

import numbers

import torch

from fastaug.compose import Compose
from fastaug.robust.ops import RobustAugment

KINDS = ("class", "probabilities", "mask", "boxes", "keypoints")


def check_images(images, name: str = "images") -> torch.Tensor:
    """uint8 or float [N, C, H, W] (float in [0, 1])."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a tensor [N, C, H, W], got {type(images).__name__}")
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"{name} must have shape [N, C, H, W] with N >= 1, got {list(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"{name} must be uint8 or float in [0, 1], got {images.dtype}")
    return images


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images (any shape) as uint8: uint8 as they are, float in [0, 1] clamped, scaled by 255 and rounded."""
    return images if images.dtype == torch.uint8 else (images.float().clamp(0, 1) * 255).round().to(torch.uint8)


def label_kind(labels, images: torch.Tensor, name: str = "labels") -> str:
    """The kind of ``labels`` for ``images`` (see the module docstring)."""
    n, _, h, w = images.shape
    if isinstance(labels, torch.Tensor):
        if labels.shape[0] != n:
            raise ValueError(f"{name} must hold one entry per image ({n}), got shape {list(labels.shape)}")
        if labels.dim() == 1 and not labels.is_floating_point():
            return "class"
        if labels.dim() == 2 and labels.is_floating_point():
            return "probabilities"
        if labels.dim() == 3 and tuple(labels.shape[1:]) == (h, w):
            return "mask"
        raise ValueError(f"{name}: a tensor must be class ids [N], probabilities [N, K] or masks [N, H, W], got {list(labels.shape)}")
    if isinstance(labels, (list, tuple)):
        if len(labels) != n:
            raise ValueError(f"{name} must hold one entry per image ({n}), got {len(labels)}")
        widths = {torch.as_tensor(x).reshape(-1, torch.as_tensor(x).shape[-1] if torch.as_tensor(x).dim() else 1).shape[-1]
                  for x in labels if torch.as_tensor(x).numel()}  # fmt: skip
        if widths <= {4}:
            return "boxes"
        if widths == {2}:
            return "keypoints"
        if all(isinstance(x, numbers.Integral) for x in labels):
            return "class"
        raise ValueError(f"{name}: a list must hold per-image boxes [n, 4] or keypoints [n, 2]")
    raise TypeError(f"{name} must be a tensor or a list of per-image tensors, got {type(labels).__name__}")


def as_labels(labels, kind: str):
    """Labels in their working form: a tensor for class / probabilities / mask, a list of float tensors otherwise."""
    if kind == "class" and not isinstance(labels, torch.Tensor):
        return torch.tensor(list(labels), dtype=torch.int64)
    if kind in ("boxes", "keypoints"):
        width = 4 if kind == "boxes" else 2
        return [torch.as_tensor(x, dtype=torch.float32).reshape(-1, width) for x in labels]
    return labels


def take(labels, kind: str, idx: torch.Tensor):
    """The labels of the samples ``idx``."""
    if kind in ("boxes", "keypoints"):
        return [labels[int(i)] for i in idx]
    return labels[idx.to(labels.device)]


def augment(images: torch.Tensor, labels, kind: str, ops, intensity: torch.Tensor, indices: torch.Tensor, seed: int,
            backend: str = "auto", return_record: bool = False, epoch: int = 0):  # fmt: skip
    """``images`` with per-sample ``intensity`` [B, len(ops)] (NaN: not applied) and the labels moved with them;
    returns (images, labels) (and the record)."""
    pipe = Compose([RobustAugment(ops, intensity)], seed=seed, backend=backend)
    kw = {}
    if kind == "mask":
        kw["mask"] = labels
    elif kind == "boxes":
        kw["bboxes"] = labels
    elif kind == "keypoints":
        kw["keypoints"] = labels
    out = pipe(images, indices=indices, epoch=epoch, return_record=return_record, **kw)
    res, record = out if return_record else (out, None)
    if not kw:
        moved = labels
        image = res
    else:
        image = res["image"]
        moved = res["mask"] if kind == "mask" else res["bboxes"] if kind == "boxes" else res["keypoints"]
    return (image, moved, record) if return_record else (image, moved)
