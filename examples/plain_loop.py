"""The plain-loop equivalent of ``lightning_style.py``: move the batch, augment on the device, step; optionally
``torch.compile`` the whole step (fastaug is one custom op there: no graph break). ``python examples/plain_loop.py``."""

from __future__ import annotations

import torch

import fastaug
from fastaug.data import IndexedDataset


def main(compile_step: bool = True) -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (256,))
    loader = torch.utils.data.DataLoader(IndexedDataset(torch.utils.data.TensorDataset(images, labels)), batch_size=64, shuffle=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10)
    ).to(device)
    augment = fastaug.Compose([
        fastaug.RandomResizedCrop(28, scale=(0.6, 1.0)), fastaug.RandomHorizontalFlip(),
        fastaug.ColorJitter(0.3, 0.3, 0.3), fastaug.Normalize([0.5] * 3, [0.25] * 3),
    ], seed=0)  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(x, y, idx, epoch):
        loss = torch.nn.functional.cross_entropy(model(augment(x, indices=idx, epoch=epoch)), y)
        opt.zero_grad()
        loss.backward()
        return loss

    if compile_step:
        step = torch.compile(step)
    for epoch in range(2):
        for idx, x, y in loader:
            x, y, idx = x.to(device, non_blocking=True), y.to(device, non_blocking=True), idx.to(device, non_blocking=True)
            loss = step(x, y, idx, epoch)  # augmentation on the device, after the transfer
            opt.step()
        print(f"epoch {epoch}: loss {float(loss.detach()):.3f}")


if __name__ == "__main__":
    main()
