"""DataLoader integration: indices ride with the batch, draws depend only on (seed, epoch, index).

Same batches for num_workers 0 / 1 / 2 and across runs; the epoch reaches (persistent) workers;
simulated DDP ranks (DistributedSampler) each reproduce the single-process result for their indices.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

import fastaug
from fastaug.data import Collate, IndexedDataset, as_chw_uint8
from fastaug.policies import AutoAugment, RandAugment, TrivialAugmentWide

N, C, H, W = 24, 3, 16, 18


class Images(torch.utils.data.Dataset):
    """(image uint8 [C,H,W], label) pairs, deterministic."""

    def __init__(self, n: int = N):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, 256, (n, C, H, W), dtype=torch.uint8, generator=g)

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, i):
        return self.x[i], i % 5


def reference(policy, epoch: int) -> torch.Tensor:
    """The whole dataset augmented in one single-process call (row i = dataset index i)."""
    data = Images()
    return policy(data.x, indices=torch.arange(len(data)), epoch=epoch, backend="torch")


def run_loader(policy, num_workers: int, epoch: int = 0, shuffle: bool = False, **kwargs):
    collate = Collate(policy, backend="torch")
    g = torch.Generator().manual_seed(123)
    loader = DataLoader(
        IndexedDataset(Images()), batch_size=5, shuffle=shuffle, generator=g, num_workers=num_workers, collate_fn=collate, **kwargs
    )
    collate.set_epoch(epoch)
    return list(loader)


def test_indexed_dataset_and_collate_stack_uint8_with_indices():
    data = IndexedDataset(Images())
    assert len(data) == N
    i, img, label = data[7]
    assert i == 7 and img.shape == (C, H, W) and label == 2
    images, labels, indices = Collate()([data[k] for k in (3, 9, 4)])
    assert images.dtype == torch.uint8 and images.shape == (3, C, H, W)
    assert torch.equal(images[1], Images().x[9])
    assert indices.tolist() == [3, 9, 4] and indices.dtype == torch.int64
    assert labels.tolist() == [3, 4, 4]


def test_collate_accepts_arrays_and_rejects_bad_items():
    hwc = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    assert torch.equal(as_chw_uint8(hwc), torch.from_numpy(hwc).permute(2, 0, 1))
    assert as_chw_uint8(np.zeros((4, 5), dtype=np.uint8)).shape == (1, 4, 5)
    with pytest.raises(ValueError, match="uint8"):
        as_chw_uint8(torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="IndexedDataset"):
        Collate()([(torch.zeros(3, 4, 4, dtype=torch.uint8), 0)])
    with pytest.raises(ValueError, match="same shape"):
        Collate()([(0, torch.zeros(3, 4, 4, dtype=torch.uint8), 0), (1, torch.zeros(3, 5, 4, dtype=torch.uint8), 0)])
    with pytest.raises(ValueError, match="epoch"):
        Collate().set_epoch(-1)
    with pytest.raises(TypeError, match="augment"):
        Collate(augment=3)
    with pytest.raises(ValueError, match="pairs"):
        IndexedDataset([torch.zeros(3)])[0]


@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_worker_augmentation_is_independent_of_workers_and_batching(num_workers):
    policy = RandAugment(num_ops=2, magnitude=9, seed=3)
    want = reference(policy, epoch=2)
    batches = run_loader(policy, num_workers, epoch=2, shuffle=True)
    seen = []
    for images, labels, indices in batches:
        assert torch.equal(images, want[indices])
        assert labels.tolist() == (indices % 5).tolist()
        seen += indices.tolist()
    assert sorted(seen) == list(range(N))
    again = run_loader(policy, num_workers, epoch=2, shuffle=True)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))


def test_epoch_reaches_persistent_workers_and_changes_draws():
    policy = TrivialAugmentWide(seed=1)
    collate = Collate(policy, backend="torch")
    loader = DataLoader(IndexedDataset(Images()), batch_size=6, num_workers=2, persistent_workers=True, collate_fn=collate)
    out = {}
    for epoch in (0, 1):
        collate.set_epoch(epoch)
        out[epoch] = torch.cat([images for images, _, _ in loader])
        assert torch.equal(out[epoch], reference(policy, epoch))
    assert not torch.equal(out[0], out[1])


def test_simulated_ddp_ranks_reproduce_the_single_process_run():
    policy = AutoAugment("imagenet", seed=5)
    data = IndexedDataset(Images())
    epoch = 3
    want = reference(policy, epoch)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=7)
        sampler.set_epoch(epoch)
        collate = Collate(policy, epoch=epoch, backend="torch")
        loader = DataLoader(data, batch_size=4, sampler=sampler, num_workers=rank, collate_fn=collate)  # 0 and 1 workers
        for images, _, indices in loader:
            assert torch.equal(images, want[indices])
            seen += indices.tolist()
    assert sorted(seen) == list(range(N))  # the ranks split the data with no overlap


def test_gpu_style_hand_off_equals_worker_augmentation():
    """(b): the loader hands over uint8 + indices; the module augments later (here on CPU)."""
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    pipe = fastaug.Compose([fastaug.RandomResizedCrop(12), RandAugment(), fastaug.Normalize(mean, std)], seed=2)
    in_workers = run_loader(pipe, 2, epoch=4)
    plain = run_loader(None, 2)
    for (aug, _, idx_a), (raw, _, idx_b) in zip(in_workers, plain):
        assert raw.dtype == torch.uint8 and torch.equal(idx_a, idx_b)
        assert torch.equal(pipe(raw, indices=idx_b, epoch=4, backend="torch"), aug)


def test_numba_backend_in_forked_workers():
    policy = RandAugment(seed=8)
    collate = Collate(policy)  # backend "auto": numba on CPU
    loader = DataLoader(IndexedDataset(Images()), batch_size=12, num_workers=2, collate_fn=collate)
    want = reference(policy, 0)
    for images, _, indices in loader:
        assert torch.equal(images, want[indices])


def test_collate_pickles_and_pin_memory_without_cuda_warns():
    collate = Collate(RandAugment(), epoch=3)
    clone = pickle.loads(pickle.dumps(collate))
    assert clone.epoch == 3 and isinstance(clone.augment, RandAugment)
    if not torch.cuda.is_available():
        with pytest.warns(UserWarning, match="pin_memory"):
            Collate(pin_memory=True)([(0, torch.zeros(1, 2, 2, dtype=torch.uint8), 0)])
