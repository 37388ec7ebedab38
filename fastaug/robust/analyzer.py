"""``Analyzer``: a model's robustness boundaries per op, realism-controlled synthesis, an HTML report, evaluation."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import torch

from fastaug.progress import Progress
from fastaug.robust import boundaries as B
from fastaug.robust import errors as E
from fastaug.robust import labels as L
from fastaug.robust import predict as P
from fastaug.robust import synthesize as S
from fastaug.robust.ops import BY_NAME, check_ops


def _real(value, name: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a finite number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _int(value, name: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


class Analyzer:
    """Where a model's output starts to change under each op, and data synthesized at a chosen realism.

    ``predict(batch) -> labels``: the model on a batch [B, C, H, W] in the images' dtype (uint8, or float in [0, 1]);
    labels are class ids [B], probabilities [B, K], masks [B, H, W], or per image boxes [n, 4] / keypoints [n, 2]
    (see :mod:`fastaug.robust.labels`; :func:`fastaug.robust.per_image` and :func:`fastaug.robust.per_file` wrap a
    model that takes one image or one file). ``diff_error(augmented_labels, original_labels) -> [B]`` in [0, 1]
    (default :func:`fastaug.robust.errors.label_error`: 0 when equal, else 1; see :mod:`fastaug.robust.errors` for
    probabilities, boxes by IoU, masks by IoU, keypoints). ``ops``: names of :data:`fastaug.robust.ops.OPS` (default:
    every op the images' channel count allows).

    **Boundaries and the realism rule.** For each op, ``search_boundaries`` measures the mean diff error ``d(t)``
    at intensities ``t = 0, step, ..., 1`` of the op's range. With ``e(t) = d(t) - d(0)``: ``start`` is the last
    intensity before ``e`` first exceeds ``tolerance`` (the model handles up to here), ``fail`` the first intensity
    where ``e >= failure`` (1, and ``fails`` False, when it never does). Realism ``r`` samples intensities uniformly
    from ``[0, fail + r (start - fail)]``, clipped to [0, 1]: ``r = 1`` keeps to ``[0, start]``, ``r = 0`` goes to
    the edge of failure, ``r < 0`` beyond it (``r = -1``: as far past ``fail`` as ``start`` is before it); an op that
    never fails has ``fail = 1`` (one the model is invariant to samples its whole range). ``set_realism(op, r)``
    overrides ``r`` for one op; ``set_weight(op, w)``
    makes an op ``w`` times as likely to be drawn in synthesis (0: never).

    ``model_id``: a fingerprint of the model (a string: a weights file's sha256, a version tag); it goes into the
    boundary cache's and the synthesis's settings, so a cache or a synthesis folder written for another model is
    refused (None: the model is not checked, so use one cache and one folder per model). The ``backend`` is kept in
    both settings too.

    ``seed`` keys every draw (positions of crops, noise, the synthesis's choices) by (seed, epoch, dataset index);
    ``batch_size``: pairs of (sample, intensity) per Plan and per ``predict`` call; ``differs_threshold``: an output
    "differs" when its diff error is above it.
    """

    def __init__(self, predict, diff_error=None, ops=None, *, tolerance: float = 0.05, failure: float = 0.5,
                 differs_threshold: float = 0.0, batch_size: int = 256, seed: int = 0, backend: str = "auto",
                 progress: bool = True, model_id: str | None = None):  # fmt: skip
        self.predict = P.check_predict(predict)
        if diff_error is not None and not callable(diff_error):
            raise TypeError(f"diff_error must be None or callable (augmented, original labels) -> [B], got {type(diff_error).__name__}")
        self.diff_error = diff_error or E.label_error
        self.ops = None if ops is None else check_ops(ops)
        self.tolerance = _real(tolerance, "tolerance", 0.0, 1.0)
        self.failure = _real(failure, "failure", 0.0, 1.0)
        if self.failure <= self.tolerance:
            raise ValueError(f"failure ({failure}) must be greater than tolerance ({tolerance})")
        self.differs_threshold = _real(differs_threshold, "differs_threshold", 0.0, 1.0)
        self.batch_size = _int(batch_size, "batch_size", 1)
        self.seed = _int(seed, "seed", 0)
        self.backend = backend
        if model_id is not None and (not isinstance(model_id, str) or not model_id):
            raise TypeError(f"model_id must be None or a non-empty string (the model's fingerprint), got {model_id!r}")
        self.model_id = model_id
        self.progress = bool(progress)
        self.curves: dict[str, B.Curve] = {}
        self.realism = 0.5
        self._realism: dict[str, float] = {}
        self._weight: dict[str, float] = {}
        self.images: torch.Tensor | None = None  # the search's data (the report shows examples of it)
        self.labels = None
        self.kind: str | None = None

    # -- labels ---------------------------------------------------------------------------------------
    def _data(self, images, labels, name: str = "images"):
        x = L.check_images(images, name)
        if labels is None:
            labels = self._predict_all(x)  # the model's own outputs are the reference
        kind = L.label_kind(labels, x)
        return x, L.as_labels(labels, kind), kind

    def _predict_all(self, x: torch.Tensor):
        parts = [P.run(self.predict, x[i : i + self.batch_size]) for i in range(0, x.shape[0], self.batch_size)]
        if all(isinstance(p, torch.Tensor) for p in parts):
            return torch.cat(parts)
        return [r for p in parts for r in (p if isinstance(p, list) else list(p))]

    def _model_settings(self) -> dict:
        """The model's part of a cache's or a synthesis's settings: the backend, and ``model_id`` when given."""
        return {"backend": self.backend, **({} if self.model_id is None else {"model": self.model_id})}

    # -- search -------------------------------------------------------------------------------------
    def search_boundaries(self, images, labels=None, step: float = 0.05, cache=None) -> dict[str, B.Curve]:
        """Per op and intensity (0, ``step``, ..., 1 of the op's range): the mean diff error over the samples and the
        fraction whose output differs, against ``labels`` (None: the model's outputs on ``images``) moved by the same
        geometric ops. ``cache``: a JSON file written atomically after each op; a rerun with the same cache, data and
        settings resumes after the last op done (the model is not part of the key: use one cache per model)."""
        x, labels, kind = self._data(images, labels)
        ops = self.ops or check_ops(None, x.shape[1])
        check_ops(ops, x.shape[1])
        ts = B.intensities(step)
        settings = {"step": step, "seed": self.seed, "differs_threshold": self.differs_threshold, "kind": kind,
                    "data": B.fingerprint(x, labels), **self._model_settings()}  # fmt: skip
        path = None if cache is None else Path(os.fspath(cache))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        curves = B.load_cache(path, settings) if path is not None else {}
        n, s = x.shape[0], len(ts)
        todo = [op for op in ops if op not in curves]
        start = (len(ops) - len(todo)) * n * s
        bar = Progress(len(ops) * n * s, "img/s", start=start) if self.progress else None
        for k, op in enumerate(todo):
            done = start + k * n * s
            curves[op] = B.search_op(op, x, labels, kind, self.predict, self.diff_error, ts, seed=self.seed,
                                     batch_size=self.batch_size, differs_threshold=self.differs_threshold,
                                     backend=self.backend, bar=bar, done=done)  # fmt: skip
            if path is not None:
                B.save_cache(path, settings, curves)
        self.curves = {op: curves[op] for op in ops}
        self.images, self.labels, self.kind = x, labels, kind
        return self.curves

    # -- boundaries and realism -----------------------------------------------------------------------
    def _searched(self, op: str) -> None:
        if op not in BY_NAME:
            raise ValueError(f"op: unknown op {op!r}")
        if op not in self.curves:
            raise ValueError(f"op: {op} has no boundary yet (run search_boundaries with it first)")

    def boundaries(self) -> dict[str, B.Boundary]:
        """Per searched op: where the model starts to differ and where it fails (see the class docstring)."""
        if not self.curves:
            raise ValueError("no boundaries yet: run search_boundaries first")
        return {op: B.boundary(c, self.tolerance, self.failure) for op, c in self.curves.items()}

    def set_realism(self, op: str, realism: float) -> None:
        """This op's realism instead of the synthesis's."""
        self._searched(op)
        self._realism[op] = _real(realism, "realism")

    def set_weight(self, op: str, weight: float) -> None:
        """How likely synthesis draws this op relative to the others (default 1; 0: never)."""
        self._searched(op)
        self._weight[op] = _real(weight, "weight", 0.0)

    def weight(self, op: str) -> float:
        return self._weight.get(op, 1.0)

    def ranges(self, realism: float | None = None) -> dict[str, tuple[float, float]]:
        """Per op the intensity range synthesis samples at ``realism`` (per-op overrides win)."""
        r = self.realism if realism is None else _real(realism, "realism")
        return {op: B.sampling_range(b, self._realism.get(op, r)) for op, b in self.boundaries().items()}

    # -- synthesis ----------------------------------------------------------------------------------
    def synthesize(self, images=None, labels=None, realism: float | None = None, count: int | None = None, min_ops: int = 3,
                   max_ops: int = 8, min_predicted_diff_error: float = 0.0, max_predicted_diff_error: float = 1.0,
                   out="robust-synth", preview_html=None, max_retries: int = 10) -> S.SynthResult:  # fmt: skip
        """Write ``count`` synthetic samples (default: one per image) under ``out``: each draws ``min_ops``..``max_ops``
        of the searched ops (weights from ``set_weight``) at intensities inside their realism ranges (``realism``:
        default ``self.realism``; overrides from ``set_realism``), one Plan per batch, labels moved with the image;
        samples whose predicted diff error falls outside ``[min_predicted_diff_error, max_predicted_diff_error]`` are
        redrawn up to ``max_retries`` times (counted). Atomic writes; a rerun resumes (see
        :mod:`fastaug.robust.synthesize`). ``images`` / ``labels`` None: the search's. ``preview_html``: also write a
        self-contained page showing the first samples. Returns the paths and labels."""
        if images is None:
            if self.images is None:
                raise ValueError("images must be given (or run search_boundaries first to use its data)")
            x, labels, kind = self.images, self.labels, self.kind
        else:
            x, labels, kind = self._data(images, labels)
        ranges = self.ranges(realism)
        ops = tuple(ranges)
        count = x.shape[0] if count is None else _int(count, "count", 0)
        min_ops, max_ops = _int(min_ops, "min_ops", 1), _int(max_ops, "max_ops", 1)
        if max_ops < min_ops:
            raise ValueError(f"max_ops ({max_ops}) must be >= min_ops ({min_ops})")
        lo = _real(min_predicted_diff_error, "min_predicted_diff_error", 0.0, 1.0)
        hi = _real(max_predicted_diff_error, "max_predicted_diff_error", 0.0, 1.0)
        if hi < lo:
            raise ValueError(f"max_predicted_diff_error ({hi}) must be >= min_predicted_diff_error ({lo})")
        weights = {op: self.weight(op) for op in ops}
        if not any(w > 0 for w in weights.values()):
            raise ValueError("weights: every op has weight 0")
        settings = {"count": count, "min_ops": min_ops, "max_ops": max_ops, "window": [lo, hi], "max_retries": max_retries,
                    "seed": self.seed, "ranges": {k: list(v) for k, v in ranges.items()}, "weights": weights, "kind": kind,
                    "data": B.fingerprint(x, labels), **self._model_settings()}  # fmt: skip
        result = S.synthesize(x, labels, kind, self.predict, self.diff_error, ops, ranges, weights, count=count, min_ops=min_ops,
                              max_ops=max_ops, window=(lo, hi), max_retries=_int(max_retries, "max_retries", 0), out=out,
                              seed=self.seed, batch_size=self.batch_size, backend=self.backend, progress=self.progress,
                              settings=settings)  # fmt: skip
        if preview_html is not None:
            from fastaug.robust import report as R

            R.synth_preview(result, preview_html)
        return result

    # -- report -------------------------------------------------------------------------------------
    def render(self, html_dir, samples: int = 3) -> Path:
        """An HTML report under ``html_dir`` (``index.html``, PNG plots per op, example images at a few intensities;
        relative links: it opens from disk without a server). Returns the page's path."""
        from fastaug.robust import report as R

        self.boundaries()  # raises before anything is written when there is no search yet
        return R.render(self, html_dir, samples=_int(samples, "samples", 1))

    # -- evaluation ---------------------------------------------------------------------------------
    def evaluate(self, images, labels) -> dict:
        """The model on ``images`` against ``labels``: ``avg_diff_error`` (mean), ``output_differs_count`` (how many
        above ``differs_threshold``), ``differing_output_errs`` (their errors, in sample order)."""
        if labels is None:
            raise ValueError("labels must be given (the reference outputs)")
        x, labels, kind = self._data(images, labels)
        errs = []
        for i in range(0, x.shape[0], self.batch_size):
            idx = torch.arange(i, min(i + self.batch_size, x.shape[0]))
            ref = L.take(labels, kind, idx)
            errs.append(E.check_errors(self.diff_error(P.run(self.predict, x[i : i + self.batch_size]), ref), idx.numel()))
        e = torch.cat(errs)
        differ = e > self.differs_threshold
        return {"avg_diff_error": float(e.mean()), "output_differs_count": int(differ.sum()), "differing_output_errs": e[differ].tolist()}
