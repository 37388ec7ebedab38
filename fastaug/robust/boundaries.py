"""Boundary search: per op and intensity step, the mean diff error and the fraction of samples whose output differs.

Every (sample, step) pair of one op is one row of a batch: the samples of a step, or the steps of a sample, run
together with per-sample intensities through one Plan per batch, and the model sees whole batches. Results are
kept in a JSON cache written atomically after each op: a killed search resumes with the ops already done.

Boundaries from a curve ``d(t)`` (the mean diff error at intensity ``t``; ``e(t) = d(t) - d(0)`` the excess over the
unaugmented error):

- ``start``: the last intensity before the first one where ``e(t) > tolerance`` (1 if none): up to here the model's
  output does not change (much);
- ``fail``: the first intensity where ``e(t) >= failure`` (``fails`` False and ``fail = 1`` if none).

Realism ``r`` maps them to a sampling range of intensities ``[0, fail + r (start - fail)]``, clipped to [0, 1]:
``r = 1`` keeps to ``[0, start]`` (what the model handles), ``r = 0`` goes to ``fail`` (the edge of failure), ``r < 0``
beyond it by ``-r`` times the width of the transition (``r = -1``: ``fail + (fail - start)``), ``r > 1`` stays below
``start``. An op that never fails has ``fail = 1``: an op the model is invariant to (``start = 1``) samples its whole
range at any realism.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from fastaug.atomic import write_text
from fastaug.progress import Progress
from fastaug.robust import errors as E
from fastaug.robust import labels as L
from fastaug.robust import predict as P
from fastaug.robust.ops import BY_NAME

FORMAT, VERSION = "fastaug.robust.boundaries", 1


@dataclass
class Curve:
    """One op's search result: per intensity, the op's value, the mean diff error and the fraction differing."""

    op: str
    intensity: list[float]
    value: list[float]
    mean_diff_error: list[float]
    fraction_differs: list[float]
    samples: int
    seconds: float


@dataclass(frozen=True)
class Boundary:
    op: str
    start: float  # intensity up to which the model's output does not change (much)
    fail: float  # intensity where it fails (1 when it never does)
    fails: bool


def intensities(step: float) -> list[float]:
    """0, step, 2 step, ..., 1 (the last step may be shorter)."""
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0.0 < step <= 1.0 or not math.isfinite(step):
        raise ValueError(f"step must be in (0, 1], got {step!r}")
    n = math.ceil(1.0 / step - 1e-9)
    return [round(min(1.0, k * step), 10) for k in range(n + 1)]


def boundary(curve: Curve, tolerance: float, failure: float) -> Boundary:
    """The boundaries of one curve (see the module docstring)."""
    t, d = curve.intensity, curve.mean_diff_error
    excess = [x - d[0] for x in d]
    first = next((k for k, e in enumerate(excess) if e > tolerance), None)
    start = 1.0 if first is None else t[max(first - 1, 0)]
    fail_at = next((k for k, e in enumerate(excess) if e >= failure), None)
    return Boundary(curve.op, start, 1.0 if fail_at is None else t[fail_at], fail_at is not None)


def sampling_range(b: Boundary, realism: float) -> tuple[float, float]:
    """The intensities a realism samples from for one op (see the module docstring)."""
    hi = b.fail + realism * (b.start - b.fail)
    return (0.0, min(1.0, max(0.0, hi)))


def fingerprint(images: torch.Tensor, labels) -> str:
    """A hash of the images and labels a cache belongs to."""
    h = hashlib.sha256()
    h.update(str((tuple(images.shape), str(images.dtype))).encode())
    h.update(images.detach().cpu().contiguous().numpy().tobytes())
    for x in labels if isinstance(labels, list) else [labels]:
        x = torch.as_tensor(x).detach().cpu().contiguous()
        h.update(str((tuple(x.shape), str(x.dtype))).encode())
        h.update(x.numpy().tobytes())
    return h.hexdigest()[:32]


def load_cache(path: Path, settings: dict) -> dict[str, Curve]:
    """The curves of a cache written with the same settings (none when the file is missing)."""
    if not path.exists():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"cache {str(path)!r} is not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ValueError(f"cache {str(path)!r} is not a {FORMAT} version {VERSION} file")
    old = doc.get("settings")
    if old != settings:
        old = old if isinstance(old, dict) else {}
        keys = sorted(set(old) | set(settings), key=str)
        diff = "; ".join(f"{k}: {old.get(k, '(none)')!r} then, {settings.get(k, '(none)')!r} now" for k in keys
                         if old.get(k) != settings.get(k))  # fmt: skip
        raise ValueError(f"cache {str(path)!r} holds a search with other settings ({diff}); use another cache")
    return {name: Curve(**c) for name, c in doc.get("curves", {}).items()}


def save_cache(path: Path, settings: dict, curves: dict[str, Curve]) -> None:
    doc = {"format": FORMAT, "version": VERSION, "settings": settings, "curves": {k: asdict(v) for k, v in curves.items()}}
    write_text(path, json.dumps(doc, indent=1) + "\n")


def search_op(op: str, images: torch.Tensor, labels, kind: str, predict, diff_error, ts: list[float], *, seed: int,
              batch_size: int, differs_threshold: float, backend: str = "auto", bar: Progress | None = None,
              done: int = 0) -> Curve:  # fmt: skip
    """One op's curve: every (sample, step) pair once, ``batch_size`` pairs per Plan and per predict call."""
    n, s = images.shape[0], len(ts)
    grid = torch.tensor(ts, dtype=torch.float64)
    total = torch.zeros(s, dtype=torch.float64)
    differs = torch.zeros(s, dtype=torch.float64)
    t0 = time.perf_counter()
    for p0 in range(0, n * s, batch_size):
        pairs = torch.arange(p0, min(p0 + batch_size, n * s))
        sample, step = pairs % n, pairs // n  # step-major: a batch holds the samples of one or a few steps
        x = images[sample.to(images.device)]
        aug, ref = L.augment(x, L.take(labels, kind, sample), kind, (op,), grid[step].unsqueeze(1), sample, seed, backend)
        err = E.check_errors(diff_error(P.run(predict, aug), ref), pairs.numel())
        total.index_add_(0, step, err)
        differs.index_add_(0, step, (err > differs_threshold).to(torch.float64))
        if bar is not None:
            bar.update(done + int(pairs[-1]) + 1, op)
    spec = BY_NAME[op]
    return Curve(op, list(ts), [float(spec.value(t)) for t in ts], (total / n).tolist(), (differs / n).tolist(), n,
                 time.perf_counter() - t0)  # fmt: skip
