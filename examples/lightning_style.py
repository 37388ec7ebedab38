"""Augment on the device after the batch is transferred: Lightning's ``on_after_batch_transfer`` pattern.

The DataLoader yields dataset indices and uint8 images (``fastaug.data.IndexedDataset``); the batch moves to the
device and only there is it augmented, per sample, in one fused pass (Triton on a GPU, Numba on the CPU). With
``lightning`` installed the class below is a real ``LightningModule``; without it a small stand-in runs the same
hooks in the same order, so the example runs anywhere: ``python examples/lightning_style.py``.
"""

from __future__ import annotations

import torch

import fastaug
from fastaug.data import IndexedDataset

try:
    import lightning as L

    Base = L.LightningModule
except ImportError:  # the hook pattern without the dependency
    L = None
    Base = torch.nn.Module


class Classifier(Base):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
            torch.nn.Linear(16, num_classes),
        )  # fmt: skip
        self.augment = fastaug.Compose([
            fastaug.RandomResizedCrop(28, scale=(0.6, 1.0)), fastaug.RandomHorizontalFlip(),
            fastaug.ColorJitter(0.3, 0.3, 0.3), fastaug.Normalize([0.5] * 3, [0.25] * 3),
        ], seed=0)  # fmt: skip
        self.epoch_now = 0  # set by the stand-in loop; under Lightning the trainer's current_epoch is used

    @property
    def epoch(self) -> int:
        """The epoch the augmentation is keyed by: Lightning's ``current_epoch`` when Lightning runs the hooks."""
        return self.current_epoch if L is not None else self.epoch_now

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        """The batch is on the device: augment there (training only), keyed by the dataset indices and epoch."""
        indices, images, labels = batch
        if self.training:
            images = self.augment(images, indices=indices, epoch=self.epoch)
        else:
            images = fastaug.functional.normalize(fastaug.functional.to_dtype(images, torch.float32, scale=True), [0.5] * 3, [0.25] * 3)
        return indices, images, labels

    def training_step(self, batch, batch_idx: int):
        _, images, labels = batch
        return torch.nn.functional.cross_entropy(self.net(images), labels)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def run_without_lightning(model: Classifier, loader, epochs: int, device: torch.device) -> list[float]:
    """What Lightning's fit loop does with these hooks: transfer, on_after_batch_transfer, training_step."""
    model.to(device).train()
    opt = model.configure_optimizers()
    losses = []
    for epoch in range(epochs):
        model.epoch_now = epoch
        for i, batch in enumerate(loader):
            batch = [t.to(device, non_blocking=True) for t in batch]  # transfer_batch_to_device
            batch = model.on_after_batch_transfer(batch)
            loss = model.training_step(batch, i)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    return losses


def main() -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (256,))
    data = IndexedDataset(torch.utils.data.TensorDataset(images, labels))  # items (index, image, label)
    loader = torch.utils.data.DataLoader(data, batch_size=64, shuffle=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = Classifier()
    if L is not None:
        L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False).fit(model, loader)
    else:
        losses = run_without_lightning(model, loader, epochs=2, device=device)
        print(f"{len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}")


if __name__ == "__main__":
    main()
