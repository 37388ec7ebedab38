"""Train a small CNN on scikit-learn's digits with and without a per-sample augmentation policy.

The 1797 8x8 digits are upscaled to 32x32 uint8 images; a few hundred train the model and the rest test
it. Batches come from a DataLoader whose collate function (:class:`fastaug.data.Collate`) augments in
the worker process with the numba backend, keyed by (seed, epoch, dataset index). Runs on CPU in a few
minutes::

    python examples/train_policy.py                         # RandAugment(2, 9), seeds 0 1 2
    python examples/train_policy.py --policy trivialaugment --seeds 0 1 2 3 4 --workers 0
    python examples/train_policy.py --policy markov randaugment   # the Markov chain fitted from AutoAugment's policies
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as nnf
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Dataset

import fastaug
from fastaug.data import Collate, IndexedDataset

POLICIES = {
    "none": lambda seed: None,
    "randaugment": lambda seed: fastaug.RandAugment(num_ops=2, magnitude=9, seed=seed),
    "trivialaugment": lambda seed: fastaug.TrivialAugmentWide(seed=seed),
    "autoaugment": lambda seed: fastaug.AutoAugment("svhn", seed=seed),
    "markov": lambda seed: fastaug.MarkovPolicy.from_autoaugment(length=2, seed=seed),  # fitted from all three tables
}


class Digits(Dataset):
    """(uint8 image [1,size,size], label) pairs."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def digits(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """All digits as uint8 [N,1,size,size] (bilinear upscaling of the 0..16 8x8 images) and labels."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = nnf.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8), torch.tensor(d.target, dtype=torch.int64)


def model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Dropout(0.2), torch.nn.Linear(64, 10),
    )  # fmt: skip


def train(policy: str, seed: int, data, epochs: int, workers: int) -> float:
    """Test accuracy of a model trained with ``policy`` (dataset indices key the augmentation)."""
    (xtr, ytr), (xte, yte) = data
    torch.manual_seed(seed)
    net = model()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=epochs * -(-len(xtr) // 64))
    collate = Collate(POLICIES[policy](seed))
    loader = DataLoader(
        IndexedDataset(Digits(xtr, ytr)), batch_size=64, shuffle=True, num_workers=workers, collate_fn=collate,
        generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0,
    )  # fmt: skip
    for epoch in range(epochs):
        collate.set_epoch(epoch)
        net.train()
        for images, labels, _ in loader:
            loss = nnf.cross_entropy(net(images.float() / 255.0), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        pred = net(xte.float() / 255.0).argmax(1)
    return float((pred == yte).double().mean())


def main(argv: list[str] | None = None) -> dict[str, list[float]]:
    p = argparse.ArgumentParser(description="digits: test accuracy with and without a fastaug policy")
    p.add_argument("--policy", nargs="+", choices=[k for k in POLICIES if k != "none"], default=["randaugment"],
                   help="one or more policies, each compared with no augmentation on the same seeds")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--train", type=int, default=500, help="training images (the rest test)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers augmenting with numba")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training (tiny model: 1 is fastest)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    x, y = digits()
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
    tr, te = perm[: a.train], perm[a.train :]
    data = ((x[tr], y[tr]), (x[te], y[te]))
    print(f"digits 32x32: {len(tr)} train / {len(te)} test, {a.epochs} epochs, policies {a.policy}, seeds {a.seeds}")
    results: dict[str, list[float]] = {"none": [], **{name: [] for name in a.policy}}
    for seed in a.seeds:
        for policy in results:
            t0 = time.perf_counter()
            acc = train(policy, seed, data, a.epochs, a.workers)
            results[policy].append(acc)
            print(f"  seed {seed}  {policy:15s} test accuracy {acc:.4f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    for policy, accs in results.items():
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{policy:15s} mean {statistics.mean(accs):.4f} +- {sd:.4f}  ({', '.join(f'{v:.4f}' for v in accs)})")
    return results


if __name__ == "__main__":
    main()
