"""A user's model as ``predict(batch) -> labels``, and wrappers for models that take one image or one file at a time."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fastaug.robust.labels import to_uint8


def check_predict(predict, name: str = "predict") -> Callable:
    if not callable(predict):
        raise TypeError(f"{name} must be callable (a batch [B, C, H, W] -> labels), got {type(predict).__name__}")
    return predict


def _stack(outputs: list):
    ts = [torch.as_tensor(np.asarray(o)) if not isinstance(o, torch.Tensor) else o for o in outputs]
    if ts and all(t.shape == ts[0].shape for t in ts) and all(t.dim() <= 1 or t.shape[0] != 0 for t in ts):
        return torch.stack(ts)
    return ts


def run(predict: Callable, batch: torch.Tensor):
    """``predict(batch)`` with numpy arrays turned into tensors (a list of per-sample outputs kept as a list)."""
    with torch.no_grad():
        out = predict(batch)
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if isinstance(out, (list, tuple)):
        out = [torch.from_numpy(o) if isinstance(o, np.ndarray) else o for o in out]
        if len(out) != batch.shape[0]:
            raise ValueError(f"predict must return one label per image ({batch.shape[0]}), got {len(out)}")
        return list(out)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"predict must return a tensor, an array or a list of per-image labels, got {type(out).__name__}")
    if out.dim() == 0 or out.shape[0] != batch.shape[0]:
        raise ValueError(f"predict must return one label per image ({batch.shape[0]}), got shape {list(out.shape)}")
    return out


def per_image(predict_one: Callable) -> Callable:
    """A batch predict from ``predict_one(image [C, H, W]) -> label``: labels of equal shapes are stacked into a tensor,
    others (boxes) kept as a list."""
    check_predict(predict_one, "predict_one")

    def predict(batch: torch.Tensor):
        return _stack([predict_one(img) for img in batch])

    return predict


def per_file(predict_file: Callable, suffix: str = ".png") -> Callable:
    """A batch predict from ``predict_file(path) -> label`` (a model that reads image files): each uint8 image is written
    to a temporary file (PNG) and handed over by path, one after the other (the known tools' way)."""
    check_predict(predict_file, "predict_file")

    def predict(batch: torch.Tensor):
        from PIL import Image

        out = []
        with tempfile.TemporaryDirectory(prefix="fastaug-robust-") as tmp:
            for k, img in enumerate(batch):
                arr = to_uint8(img).permute(1, 2, 0).cpu().numpy()
                path = Path(tmp) / f"{k}{suffix}"
                Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)
                out.append(predict_file(os.fspath(path)))
        return _stack(out)

    return predict
