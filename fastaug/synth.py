"""Synthetic dataset generation: N augmented copies of a labelled image folder, resumable after a kill.

Output ``k`` comes from source image ``k % n_sources`` with the draws of dataset index ``k`` (epoch 0),
so every output is a pure function of (inputs, policy, seed, k): a killed run resumes by skipping the
outputs already on disk, and a resumed run writes exactly the files a clean run would. Every file is
written to a temporary name and renamed into place (atomic on POSIX), so a kill never leaves a torn file
under a final name. Labels come from the input's folder structure (``DIR/<label>/*.png``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fastaug.progress import Progress

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST = "labels.csv"
SETTINGS = "synth.json"


@dataclass(frozen=True)
class Source:
    name: str  # file stem, or a built-in name
    label: str  # the folder name ('' for images at the top level)
    load: Callable[[], np.ndarray]  # HxWx3 uint8


def _load_file(path: Path) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    return load


def builtin_sources() -> list[Source]:
    """scikit-learn's two bundled photos, one class each."""
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    out = []
    for name, img in zip(data.filenames, data.images, strict=True):
        stem = Path(name).stem
        out.append(Source(stem, stem, lambda img=img: img))
    return out


def folder_sources(root: str | os.PathLike) -> list[Source]:
    """Images under ``root``: ``root/<label>/<name>.png`` (any depth-1 folder is a label) or ``root/<name>.png``."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"input must be a folder of images or 'builtin', got {str(root)!r}")
    found = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(root)
        if len(rel.parts) > 2:
            raise ValueError(f"input images must sit in {root}/<label>/, found {rel}")
        label = rel.parts[0] if len(rel.parts) == 2 else ""
        found.append(Source(path.stem, label, _load_file(path)))
    if not found:
        raise ValueError(f"input folder {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def output_name(source: Source, k: int) -> str:
    return str(Path(source.label) / f"{source.name}_{k:07d}.png")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _png(image: torch.Tensor) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image.permute(1, 2, 0).contiguous().numpy()).save(buf, format="PNG")
    return buf.getvalue()


def _tensor(source: Source) -> torch.Tensor:
    return torch.from_numpy(np.array(source.load(), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _check_settings(out: Path, settings: dict) -> None:
    path = out / SETTINGS
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings:
            raise ValueError(f"{out} holds a run with other settings {old}; use another --out or the same settings")
    else:
        _atomic_write(path, json.dumps(settings, indent=1).encode())


def synthesize(
    sources: list[Source],
    out: str | os.PathLike,
    count: int,
    policy: torch.nn.Module,
    settings: dict,
    batch: int = 64,
    backend: str = "auto",
    progress: bool = True,
) -> int:
    """Write ``count`` augmented images to ``out`` (skipping those already there); returns how many were written."""
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(out, settings)
    for label in {s.label for s in sources}:
        (out / label).mkdir(parents=True, exist_ok=True)
        for stale in (out / label).glob(".*.tmp"):  # left by a killed run
            stale.unlink()
    n = len(sources)
    todo = [k for k in range(count) if not (out / output_name(sources[k % n], k)).exists()]
    bar = Progress(count) if progress else None
    done = count - len(todo)
    written = 0
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        images = {s: _tensor(sources[s]) for s in sorted({k % n for k in chunk})}
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for k in chunk:  # one batch per image size: different sources ride together
            by_shape.setdefault(tuple(images[k % n].shape), []).append(k)
        for ids in by_shape.values():
            x = torch.stack([images[k % n] for k in ids])
            y = policy(x, indices=torch.tensor(ids), epoch=0, backend=backend)
            if y.dtype != torch.uint8:
                raise ValueError(f"policy must return uint8 images to be written as PNG, got {y.dtype} (drop Normalize/ToDtype)")
            for k, img in zip(ids, y, strict=True):
                _atomic_write(out / output_name(sources[k % n], k), _png(img))
                written += 1
            done += len(ids)
            if bar:
                bar.update(done)
    if bar and not todo:
        bar.update(done)
    _write_manifest(out, sources, count)
    return written


def _write_manifest(out: Path, sources: list[Source], count: int) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "label", "source", "index"])
    n = len(sources)
    for k in range(count):
        s = sources[k % n]
        writer.writerow([output_name(s, k), s.label, s.name, k])
    _atomic_write(out / MANIFEST, buf.getvalue().encode())
