"""DataLoader integration: a collate function that carries dataset indices, and augments either in the
CPU workers or hands the uint8 batch to the training loop for GPU augmentation.

fastaug's draws are a pure function of (seed, epoch, dataset index), so they do not depend on the
worker count, the batch composition, the process or the rank: there is no per-worker or per-rank
seeding to do. Under DDP each rank's ``DistributedSampler`` gives it its own indices, and every sample
gets the same augmentation it would get in a single-process run, with no coordination.

Usage::

    data = IndexedDataset(dataset)                # items (index, image, label); image uint8 [C,H,W]

    # (a) augment in the CPU workers (numba backend)
    collate = Collate(policy)                     # policy: a fastaug.Compose or a policy module
    loader = DataLoader(data, batch_size=64, num_workers=2, collate_fn=collate)
    for epoch in range(epochs):
        collate.set_epoch(epoch)                  # before iterating (workers see it, persistent or not)
        for images, labels, indices in loader: ...

    # (b) augment on the GPU: the loader hands over the uint8 batch and its indices
    loader = DataLoader(data, batch_size=256, num_workers=4, collate_fn=Collate(), pin_memory=True)
    for epoch in range(epochs):
        for images, labels, indices in loader:
            images = images.to("cuda", non_blocking=True)
            images = policy(images, indices=indices.to("cuda", non_blocking=True), epoch=epoch)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from fastaug.validation import check_epoch


class IndexedDataset(Dataset):
    """Wraps a map-style dataset whose items are ``(image, label)``: items become ``(index, image, label)``.

    The index is the key of the sample's draws; wrap the dataset you sample from (after any
    ``Subset``) only if its indices are the ones you want to key the augmentation with.
    """

    def __init__(self, dataset: Dataset):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"dataset must be a map-style dataset (__getitem__ and __len__), got {type(dataset).__name__}")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"dataset items must be (image, label) pairs, got {type(item).__name__}")
        return index, item[0], item[1]


def as_chw_uint8(image) -> torch.Tensor:
    """One image as a uint8 tensor [C,H,W]: a tensor [C,H,W] or [H,W], or a numpy array / PIL image [H,W(,C)]."""
    if isinstance(image, torch.Tensor):
        t = image.unsqueeze(0) if image.dim() == 2 else image
    else:
        a = np.asarray(image)
        if a.ndim not in (2, 3):
            raise ValueError(f"images must be [H,W] or [H,W,C] arrays, got shape {a.shape}")
        t = torch.from_numpy(np.ascontiguousarray(a[..., None] if a.ndim == 2 else a)).permute(2, 0, 1)
    if t.dtype != torch.uint8 or t.dim() != 3:
        raise ValueError(f"images must be uint8 [C,H,W] (tensors) or [H,W(,C)] (arrays), got {t.dtype} {list(t.shape)}")
    return t


class Collate:
    """Collate ``(index, image, label)`` items into ``(images, labels, indices)``.

    ``images`` is the stacked uint8 batch [B,C,H,W] (all images the same size), or, with ``augment``,
    ``augment(images, indices=indices, epoch=epoch, backend=backend)`` computed in the worker (a
    fastaug ``Compose`` or policy; numba on CPU). ``indices`` is int64 [B]. ``pin_memory=True`` stacks
    into pinned memory (only useful with ``num_workers=0``: a worker's batch is copied to shared
    memory on its way out; with workers use the DataLoader's ``pin_memory=True``). Picklable.
    """

    def __init__(self, augment: torch.nn.Module | None = None, *, epoch: int = 0, pin_memory: bool = False, backend: str = "auto"):
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be a fastaug Compose or policy module, got {type(augment).__name__}")
        if not isinstance(pin_memory, bool):
            raise TypeError(f"pin_memory must be a bool, got {pin_memory!r}")
        self.augment = augment
        self.pin_memory = pin_memory
        self.backend = backend
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()  # seen by (persistent) workers
        self.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """The epoch keying the draws of the next batches (call before iterating the loader)."""
        self._epoch.fill_(check_epoch(epoch))  # TypeError / ValueError naming epoch

    def stack(self, images: Sequence) -> torch.Tensor:
        """uint8 [B,C,H,W] (pinned when asked and an accelerator is present)."""
        imgs = [as_chw_uint8(im) for im in images]
        shapes = {tuple(t.shape) for t in imgs}
        if len(shapes) != 1:
            raise ValueError(f"images must all have the same shape to be stacked, got {sorted(shapes)}")
        out = None
        if self.pin_memory:
            if torch.cuda.is_available():
                out = torch.empty((len(imgs), *imgs[0].shape), dtype=torch.uint8, pin_memory=True)
            else:
                warnings.warn("Collate(pin_memory=True) without CUDA: not pinning", stacklevel=2)
        return torch.stack(imgs, out=out)

    def __call__(self, batch: Sequence) -> tuple[torch.Tensor, object, torch.Tensor]:
        if not batch or any(not isinstance(item, (tuple, list)) or len(item) != 3 for item in batch):
            raise ValueError("batch items must be (index, image, label) triples: wrap the dataset in IndexedDataset")
        indices = torch.as_tensor([int(item[0]) for item in batch], dtype=torch.int64)
        images = self.stack([item[1] for item in batch])
        labels = default_collate([item[2] for item in batch])
        if self.augment is not None:
            images = self.augment(images, indices=indices, epoch=self.epoch, backend=self.backend)
        return images, labels, indices
