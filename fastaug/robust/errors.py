"""Diff errors: how far a model's output on an augmented image is from the reference, per sample, in [0, 1].

A diff error is ``diff_error(augmented_labels, original_labels) -> [B]`` with values in [0, 1]: 0 when the output did
not change, 1 when it changed completely. ``original_labels`` are the reference labels moved by the same geometric
ops as the image (boxes, masks, keypoints), so a detector that follows a rotation has error 0.
"""

from __future__ import annotations

import torch


def _rows(labels) -> list:
    if isinstance(labels, torch.Tensor):
        return list(labels) if labels.dim() > 0 else [labels]
    if isinstance(labels, (list, tuple)):
        return list(labels)
    raise TypeError(f"labels must be a tensor or a list of per-sample labels, got {type(labels).__name__}")


def _pairs(augmented, original) -> list[tuple[torch.Tensor, torch.Tensor]]:
    a, o = _rows(augmented), _rows(original)
    if len(a) != len(o):
        raise ValueError(f"augmented_labels hold {len(a)} samples, original_labels {len(o)}")
    return [(torch.as_tensor(x), torch.as_tensor(y)) for x, y in zip(a, o, strict=True)]


def label_error(augmented_labels, original_labels) -> torch.Tensor:
    """The default: 0 where a sample's output equals the reference (class, mask, any tensor), else 1."""
    a, o = augmented_labels, original_labels
    if isinstance(a, torch.Tensor) and isinstance(o, torch.Tensor):
        if a.shape != o.shape:
            raise ValueError(f"augmented_labels {list(a.shape)} and original_labels {list(o.shape)} differ in shape")
        same = a.reshape(a.shape[0], -1).cpu() == o.reshape(o.shape[0], -1).cpu()
        return 1.0 - same.all(1).to(torch.float64)
    equal = [x.shape == y.shape and torch.equal(x.cpu(), y.cpu()) for x, y in _pairs(a, o)]
    return 1.0 - torch.tensor(equal, dtype=torch.float64)


def probability_error(augmented_labels, original_labels) -> torch.Tensor:
    """Class probabilities [B, K]: the total variation distance ``0.5 sum |p - q|`` (0: the same distribution, 1:
    disjoint)."""
    p, q = torch.as_tensor(augmented_labels).to(torch.float64).cpu(), torch.as_tensor(original_labels).to(torch.float64).cpu()
    if p.dim() != 2 or p.shape != q.shape:
        raise ValueError(f"probabilities must both be [B, K], got {list(p.shape)} and {list(q.shape)}")
    return (0.5 * (p - q).abs().sum(1)).clamp(0.0, 1.0)


def mask_iou_error(augmented_labels, original_labels) -> torch.Tensor:
    """Segmentation masks [B, H, W] of class ids: 1 - the mean IoU over the classes present in either mask (0 when
    both are all background, class 0, and agree)."""
    out = []
    for a, o in _pairs(augmented_labels, original_labels):
        if a.shape != o.shape:
            raise ValueError(f"masks must have the same shape, got {list(a.shape)} and {list(o.shape)}")
        a, o = a.cpu(), o.cpu()
        classes = torch.unique(torch.cat([a.flatten(), o.flatten()]))
        classes = classes[classes != 0] if classes.numel() > 1 else classes
        ious = [float(((a == c) & (o == c)).sum()) / max(float(((a == c) | (o == c)).sum()), 1.0) for c in classes]
        out.append(1.0 - sum(ious) / max(len(ious), 1))
    return torch.tensor(out, dtype=torch.float64)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU [N, M] of xyxy boxes."""
    a, b = a.to(torch.float64).reshape(-1, 4), b.to(torch.float64).reshape(-1, 4)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter).clamp(min=1e-12)


def box_iou_error(threshold: float = 0.5):
    """Boxes (per sample an [N, 4] xyxy tensor): greedy one-to-one matching by IoU >= ``threshold``; the error is
    ``1 - matched / max(N_predicted, N_reference)`` (0 when both are empty)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")

    def error(augmented_labels, original_labels) -> torch.Tensor:
        out = []
        for a, o in _pairs(augmented_labels, original_labels):
            n = max(a.reshape(-1, 4).shape[0], o.reshape(-1, 4).shape[0])
            if n == 0:
                out.append(0.0)
                continue
            iou = box_iou(a.cpu(), o.cpu())
            matched = 0
            while iou.numel() and float(iou.max()) >= threshold:
                k = int(iou.argmax())
                i, j = divmod(k, iou.shape[1])
                iou[i, :], iou[:, j] = -1.0, -1.0
                matched += 1
            out.append(1.0 - matched / n)
        return torch.tensor(out, dtype=torch.float64)

    return error


def keypoint_error(tolerance: float = 2.0):
    """Keypoints (per sample [N, 2] (x, y) in the same order): the fraction of points more than ``tolerance`` pixels
    from the reference (a count mismatch: 1)."""

    def error(augmented_labels, original_labels) -> torch.Tensor:
        out = []
        for a, o in _pairs(augmented_labels, original_labels):
            a, o = a.to(torch.float64).reshape(-1, 2).cpu(), o.to(torch.float64).reshape(-1, 2).cpu()
            if a.shape != o.shape:
                out.append(1.0)
            else:
                out.append(float(((a - o).norm(dim=1) > tolerance).to(torch.float64).mean()) if a.numel() else 0.0)
        return torch.tensor(out, dtype=torch.float64)

    return error


def check_errors(err, b: int) -> torch.Tensor:
    """A diff error's output as float64 [B] on the CPU, checked to lie in [0, 1]."""
    e = torch.as_tensor(err).detach().to(torch.float64).cpu().reshape(-1)
    if e.numel() != b:
        raise ValueError(f"diff_error must return one value per sample ({b}), got {e.numel()}")
    if not bool(torch.isfinite(e).all()) or float(e.min()) < 0.0 or float(e.max()) > 1.0:
        raise ValueError("diff_error must return values in [0, 1]")
    return e
