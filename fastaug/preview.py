"""Previews of an augmented batch: a grid PNG and a self-contained HTML page listing each sample's ops."""

from __future__ import annotations

import base64
import html
import io
import os

import numpy as np
import torch


def grid(batch: torch.Tensor, cols: int, pad: int = 4) -> np.ndarray:
    """uint8 [B,3,H,W] -> one HxWx3 uint8 image, ``cols`` samples per row on a white background."""
    b, _, h, w = batch.shape
    rows = (b + cols - 1) // cols
    canvas = np.full((rows * (h + pad), cols * (w + pad), 3), 255, dtype=np.uint8)
    for i in range(b):
        r, k = divmod(i, cols)
        canvas[r * (h + pad) : r * (h + pad) + h, k * (w + pad) : k * (w + pad) + w] = batch[i].permute(1, 2, 0).numpy()
    return canvas


def _png_data_uri(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _format_call(name: str, kwargs: dict) -> str:
    def value(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    return f"{name}(" + ", ".join(f"{k}={value(v)}" for k, v in kwargs.items()) + ")"


def write(out_dir: str, batch: torch.Tensor, record, title: str, cols: int = 4) -> tuple[str, str]:
    """Write ``grid.png`` and ``preview.html`` (each sample with ``record.calls(i)``); returns both paths."""
    from PIL import Image

    if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[1] != 3:
        raise ValueError(f"batch must be uint8 [B,3,H,W] to preview, got {batch.dtype} {list(batch.shape)}")
    os.makedirs(out_dir, exist_ok=True)
    png = os.path.join(out_dir, "grid.png")
    Image.fromarray(grid(batch, cols)).save(png)
    cells = []
    for i in range(batch.shape[0]):
        ops = "".join(f"<li>{html.escape(_format_call(n, kw))}</li>" for n, kw in record.calls(i)) or "<li>(identity)</li>"
        uri = _png_data_uri(batch[i].permute(1, 2, 0).contiguous().numpy())
        cells.append(f'<figure><img src="{uri}"><figcaption>sample {int(record.indices[i])}<ol>{ops}</ol></figcaption></figure>')
    page = (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}main{display:flex;flex-wrap:wrap;gap:12px}"
        "figure{margin:0;width:240px}img{width:224px}ol{font-size:11px;padding-left:18px}</style>"
        f"<h1>{html.escape(title)}</h1><main>{''.join(cells)}</main>"
    )
    page_path = os.path.join(out_dir, "preview.html")
    with open(page_path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return png, page_path
