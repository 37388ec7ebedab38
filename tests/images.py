"""Test images: uint8-valued batches in any dtype and memory layout."""

from __future__ import annotations

import torch


def image(dtype: torch.dtype, shape, seed: int) -> torch.Tensor:
    """A batch of random uint8 values (float dtypes: divided by 255)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    return x if dtype == torch.uint8 else (x.double() / 255).to(dtype)


def image_in_layout(dtype: torch.dtype, shape, seed: int, layout: str) -> torch.Tensor:
    """:func:`image` stored "contiguous", "channels_last" or "strided" (every other row of a taller batch)."""
    if layout == "strided":
        b, c, h, w = shape
        return image(dtype, (b, c, 2 * h, w), seed)[:, :, ::2]
    x = image(dtype, shape, seed)
    return x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
