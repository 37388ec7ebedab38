"""Realism-controlled synthesis: per output a few ops at intensities inside their realism ranges, labels moved to match.

Output ``k`` starts from source image ``k % N``. Its draws are a pure function of (seed, k, attempt): how many ops
(``min_ops``..``max_ops``, at most the ops with a positive weight), which (weighted, without replacement:
Efraimidis-Spirakis keys ``u^(1/w)``), each one's intensity (uniform in its range), and the ops' own draws (noise,
positions) keyed by (seed, epoch = attempt, index k). One Plan per batch. The model then predicts the batch; a
sample whose diff error against its moved labels lies outside ``[min_predicted_diff_error,
max_predicted_diff_error]`` is drawn again with the next attempt, at most ``max_retries`` times (every redraw is
counted; a sample still outside is recorded as rejected and gets no image).

Files under ``out``: ``images/<k>.png``, ``masks/<k>.png`` for mask labels (8-bit gray PNG: mask ids must lie in
0..255, others are refused before anything is written), and ``labels/<k>.json`` (label, ops,
intensities, values, diff error, attempts), each written to a temporary name and renamed into place; the JSON comes
last and marks the output done, so a killed run resumes with the outputs not yet done and writes what a clean run
would. ``settings.json`` keeps the run's settings (a rerun with others is refused) and ``manifest.json`` lists every
output at the end.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fastaug import rng
from fastaug.atomic import check_settings, remove_temporaries, write_bytes, write_text
from fastaug.imagefiles import encode
from fastaug.progress import Progress
from fastaug.robust import errors as E
from fastaug.robust import labels as L
from fastaug.robust import predict as P
from fastaug.robust.ops import BY_NAME

SETTINGS, MANIFEST = "settings.json", "manifest.json"
_DRAW_SLOT = 7  # the synthesis's choices: a slot of their own (the ops' draws live at 2^14 and above)


@dataclass
class SynthResult:
    """``paths[k]``: output k's image (None where rejected); ``labels[k]``: its labels (class id, probabilities, boxes,
    keypoints, or the mask's path); ``retries``: redraws in this run; ``rejected``: outputs without an image."""

    out: Path
    paths: list[str | None]
    labels: list
    retries: int = 0
    rejected: int = 0
    written: int = 0
    records: list[dict] = field(default_factory=list)


def draw(seed: int, indices: torch.Tensor, attempt: int, ops: tuple[str, ...], weights: list[float],
         ranges: list[tuple[float, float]], min_ops: int, max_ops: int) -> torch.Tensor:  # fmt: skip
    """Intensities [B, len(ops)] (NaN: not drawn) for outputs ``indices`` at ``attempt`` (see the module docstring)."""
    n = len(ops)
    u = rng.uniform(seed, attempt, indices, _DRAW_SLOT, 1 + 2 * n).to(torch.float64)
    w = torch.tensor(weights, dtype=torch.float64)
    usable = int((w > 0).sum())
    lo, hi = min(min_ops, usable), min(max_ops, usable)
    count = (lo + torch.floor(u[:, 0] * (hi - lo + 1))).clamp(max=hi).to(torch.int64)
    keys = torch.where(w > 0, u[:, 1 : 1 + n].clamp(min=1e-12) ** (1.0 / w.clamp(min=1e-12)), -1.0)
    rank = torch.argsort(torch.argsort(keys, dim=1, descending=True), dim=1)
    chosen = rank < count.unsqueeze(1)
    r = torch.tensor(ranges, dtype=torch.float64).view(1, n, 2)
    t = r[..., 0] + u[:, 1 + n :] * (r[..., 1] - r[..., 0])
    return torch.where(chosen, t, torch.nan)


def _png(path: Path, image: torch.Tensor) -> None:
    """``image`` [C, H, W] as a PNG written atomically (a temporary name, flushed, renamed into place)."""
    write_bytes(path, encode(L.to_uint8(image).permute(1, 2, 0).cpu().numpy(), "png"))


def _check_mask_ids(mask: torch.Tensor) -> None:
    """Mask ids must fit the 8-bit PNG masks are written as (a wider id would wrap silently)."""
    if not mask.numel():
        return
    lo, hi = float(mask.min()), float(mask.max())
    if lo < 0 or hi > 255 or (mask.is_floating_point() and not bool((mask == mask.round()).all())):
        raise ValueError(f"labels: mask ids must be integers in 0..255 (masks are written as 8-bit PNG), got values from {lo:g} to {hi:g}")


def _plain(label, kind: str):
    if kind == "class":
        return int(label)
    return torch.as_tensor(label).tolist()


def synthesize(images: torch.Tensor, labels, kind: str, predict, diff_error, ops: tuple[str, ...], ranges: dict, weights: dict,
               *, count: int, min_ops: int, max_ops: int, window: tuple[float, float], max_retries: int, out, seed: int,
               batch_size: int, backend: str = "auto", progress: bool = True, settings: dict | None = None) -> SynthResult:  # fmt: skip
    """Write ``count`` synthetic samples under ``out`` (see the module docstring); ``ranges`` / ``weights``: per op."""
    if kind == "mask":
        _check_mask_ids(labels)
    out = Path(os.fspath(out))
    for sub in ("images", "labels") + (("masks",) if kind == "mask" else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
        remove_temporaries(out / sub)  # left by a killed run
    check_settings(out / SETTINGS, settings or {}, f"out: {out} holds a synthesis")
    n = images.shape[0]
    name = lambda k: f"{k:07d}"  # noqa: E731
    todo = [k for k in range(count) if not (out / "labels" / f"{name(k)}.json").exists()]
    bar = Progress(count, "img/s", start=count - len(todo)) if progress else None
    w = [weights.get(op, 1.0) for op in ops]
    r = [ranges[op] for op in ops]
    result = SynthResult(out, [], [])
    done = count - len(todo)
    for start in range(0, len(todo), batch_size):
        pending = torch.tensor(todo[start : start + batch_size], dtype=torch.int64)
        for attempt in range(max_retries + 1):
            t = draw(seed, pending, attempt, ops, w, r, min_ops, max_ops)
            src = pending % n
            aug, moved = L.augment(images[src.to(images.device)], L.take(labels, kind, src), kind, ops, t, pending, seed, backend,
                                   epoch=attempt)  # fmt: skip
            err = E.check_errors(diff_error(P.run(predict, aug), moved), pending.numel())
            ok = (err >= window[0]) & (err <= window[1])
            last = attempt == max_retries
            for j in range(pending.numel()):
                if not (bool(ok[j]) or last):
                    continue
                k = int(pending[j])
                rec = {"index": k, "source": int(src[j]), "attempts": attempt + 1, "diff_error": float(err[j]),
                       "accepted": bool(ok[j]),
                       "ops": {op: {"intensity": float(t[j, i]), "value": float(BY_NAME[op].value(float(t[j, i])))}
                               for i, op in enumerate(ops) if not torch.isnan(t[j, i])}}  # fmt: skip
                if bool(ok[j]):
                    _png(out / "images" / f"{name(k)}.png", aug[j])
                    rec["image"] = f"images/{name(k)}.png"
                    if kind == "mask":
                        _check_mask_ids(moved[j])
                        _png(out / "masks" / f"{name(k)}.png", moved[j].unsqueeze(0).to(torch.uint8))
                        rec["label"] = f"masks/{name(k)}.png"
                    else:
                        rec["label"] = _plain(moved[j], kind)
                    result.written += 1
                else:
                    result.rejected += 1
                write_text(out / "labels" / f"{name(k)}.json", json.dumps(rec) + "\n")
            keep = ~ok
            if last or not bool(keep.any()):
                break
            result.retries += int(keep.sum())
            pending = pending[keep]
        done += min(batch_size, len(todo) - start)
        if bar is not None:
            bar.update(done)
    records = [json.loads((out / "labels" / f"{name(k)}.json").read_text()) for k in range(count)]
    write_text(out / MANIFEST, json.dumps({"count": count, "outputs": records}) + "\n")
    result.records = records
    result.paths = [str(out / rec["image"]) if rec.get("image") else None for rec in records]
    result.labels = [rec.get("label") for rec in records]
    return result


def load(out) -> tuple[torch.Tensor, list, list[dict]]:
    """A synthesis's accepted images as uint8 [M, C, H, W], their labels and records (from ``manifest.json``)."""
    from PIL import Image

    out = Path(os.fspath(out))
    doc = json.loads((out / MANIFEST).read_text())
    recs = [r for r in doc["outputs"] if r.get("image")]
    arrays = []
    for r in recs:
        with Image.open(out / r["image"]) as im:
            a = np.asarray(im)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    x = torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, dtype=torch.uint8)
    return x, [r["label"] for r in recs], recs
