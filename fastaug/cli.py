"""The ``fastaug`` command: ``fastaug demo`` augments built-in photos and reports throughput."""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

import fastaug

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def default_pipeline(size: int = 224, seed: int = 0, normalize: bool = True) -> fastaug.Compose:
    """The reference pipeline: crop, affine, color jitter, flip, posterize, solarize, normalize."""
    steps = [
        fastaug.RandomResizedCrop(size, scale=(0.35, 1.0)),
        fastaug.RandomAffine(30, translate=(0.1, 0.1), shear=10, interpolation="bilinear"),
        fastaug.ColorJitter(0.4, 0.4, 0.4, 0.1),
        fastaug.RandomHorizontalFlip(),
        fastaug.RandomPosterize(4, p=0.5),
        fastaug.RandomSolarize(128, p=0.5),
    ]
    if normalize:
        steps.append(fastaug.Normalize(MEAN, STD))
    return fastaug.Compose(steps, seed=seed)


def sample_photos() -> torch.Tensor:
    """scikit-learn's two bundled photos as a uint8 batch [2,3,427,640]."""
    from sklearn.datasets import load_sample_images

    return torch.from_numpy(np.stack(load_sample_images().images)).permute(0, 3, 1, 2).contiguous()


def _grid(batch: torch.Tensor, cols: int) -> np.ndarray:
    b, c, h, w = batch.shape
    rows = (b + cols - 1) // cols
    canvas = np.full((rows * (h + 4), cols * (w + 4), 3), 255, dtype=np.uint8)
    for i in range(b):
        r, k = divmod(i, cols)
        canvas[r * (h + 4) : r * (h + 4) + h, k * (w + 4) : k * (w + 4) + w] = batch[i].permute(1, 2, 0).numpy()
    return canvas


def demo(out_dir: str, count: int, backend: str) -> None:
    from PIL import Image

    photos = sample_photos()
    idx = torch.arange(count)
    batch = photos[idx % photos.shape[0]]
    aug = default_pipeline(normalize=False)
    shown = aug(batch, indices=idx, backend=backend)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "grid.png")
    Image.fromarray(_grid(shown, cols=4)).save(path)
    print(f"wrote {path}: {count} augmented samples of scikit-learn's sample photos")

    full = default_pipeline()
    x = batch[:1].expand(64, -1, -1, -1).contiguous()
    full(x, backend=backend)  # compile / warm up
    times = []
    for epoch in range(5):
        t0 = time.perf_counter()
        full(x, epoch=epoch, backend=backend)
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"{backend} backend, 64x3x427x640 uint8 -> 64x3x224x224 float32 normalized: {64 / best:.0f} img/s (best of 5)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="fastaug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="augment built-in photos, write a grid PNG, print throughput")
    d.add_argument("--out", default="fastaug-demo")
    d.add_argument("--count", type=int, default=16)
    d.add_argument("--backend", default="auto", choices=["auto", "torch", "numba", "triton"])
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.out, args.count, args.backend)


if __name__ == "__main__":
    main()
