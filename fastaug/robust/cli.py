"""``fastaug robust``: boundaries of a model on a data set, the HTML report, and optionally synthetic data.

``--model`` is a Python file that defines ``predict(batch) -> labels`` or ``load_predict() -> predict`` (called once),
or a TorchScript file (``.pt``/``.ts``: a classifier of float images in [0, 1], its argmax is the label). ``--data``: a
packaged data set (``digits``, ``mnist_5k``) or a folder ``DIR/<label>/*.png`` of images of one size. The model file's
sha256 is kept in ``OUT/boundaries.json`` and ``OUT/synth/settings.json``: a rerun into the same ``--out`` with another
model file is refused (use another ``--out``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
from pathlib import Path

import torch


def load_model(path: str):
    """``predict`` from a Python file or a TorchScript file (see the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"--model: no such file {path!r}")
    if p.suffix == ".py":
        spec = importlib.util.spec_from_file_location(f"fastaug_robust_model_{p.stem}", p)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if callable(getattr(module, "load_predict", None)):
            return module.load_predict()
        if callable(getattr(module, "predict", None)):
            return module.predict
        raise ValueError(f"--model: {path} defines neither predict(batch) nor load_predict()")
    if p.suffix in (".pt", ".ts"):
        net = torch.jit.load(os.fspath(p), map_location="cpu").eval()

        def predict(batch):
            x = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
            return net(x).argmax(1)

        return predict
    raise ValueError(f"--model must be a .py file (predict / load_predict) or a TorchScript .pt/.ts file, got {path!r}")


def model_fingerprint(path: str) -> str:
    """``sha256:<hex>`` of the model file: the boundary cache and the synthesis refuse outputs of another model."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


def load_data(name: str, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples`` images (a seeded choice) and their class ids from a packaged name or a labelled folder."""
    from fastaug.search import datasets

    if name in datasets.PACKAGED:
        x, y = datasets.packaged(name)
    else:
        import numpy as np

        from fastaug.synth import folder_sources

        sources = folder_sources(name)
        arrays = [s.load() for s in sources]
        if len({a.shape for a in arrays}) != 1:
            raise ValueError(f"--data: the images under {name} must all have one size")
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
        names = sorted({s.label for s in sources})
        y = torch.tensor([names.index(s.label) for s in sources])
    if samples < x.shape[0]:
        idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:samples]
        x, y = x[idx], y[idx]
    return x, y


def add_parser(sub) -> None:
    r = sub.add_parser("robust", help="a model's robustness boundaries per op, an HTML report, synthetic data (resumable)",
                       description=__doc__)  # fmt: skip
    r.add_argument("--model", required=True, help="a .py file with predict(batch) or load_predict(), or a TorchScript classifier")
    r.add_argument("--data", default="digits", help="digits, mnist_5k, or a folder DIR/<label>/*.png (default digits)")
    r.add_argument("--out", required=True, help="folder for boundaries.json (the cache), index.html and its PNGs")
    r.add_argument("--samples", type=int, default=200, help="images searched (default 200)")
    r.add_argument("--step", type=float, default=0.1, help="intensity step (default 0.1)")
    r.add_argument("--ops", default=None, help="comma-separated op names (default: every op the images allow)")
    r.add_argument("--labels", default="truth", choices=["truth", "model"],
                   help="the reference: the data's labels, or the model's own outputs (default truth)")  # fmt: skip
    r.add_argument("--synth-count", type=int, default=0, help="also synthesize this many samples into OUT/synth (default 0)")
    r.add_argument("--realism", type=float, default=0.5, help="the synthesis's realism (default 0.5)")
    r.add_argument("--batch-size", type=int, default=256)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> None:
    from fastaug.robust import Analyzer

    out = Path(args.out)
    try:
        if args.samples < 1:
            raise ValueError(f"--samples must be >= 1, got {args.samples}")
        if args.synth_count < 0:
            raise ValueError(f"--synth-count must be >= 0, got {args.synth_count}")
        predict = load_model(args.model)
        x, y = load_data(args.data, args.samples, args.seed)
        ops = None if args.ops is None else [o.strip() for o in args.ops.split(",") if o.strip()]
        a = Analyzer(predict, ops=ops, batch_size=args.batch_size, seed=args.seed, progress=not args.no_progress,
                     model_id=model_fingerprint(args.model))  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        a.search_boundaries(x, y if args.labels == "truth" else None, step=args.step, cache=out / "boundaries.json")
        page = a.render(out)
        synth = None
        if args.synth_count > 0:
            synth = a.synthesize(
                realism=args.realism, count=args.synth_count, out=out / "synth", preview_html=out / "synth" / "preview.html"
            )
    except (OSError, ValueError, TypeError, RuntimeError) as e:
        raise SystemExit(f"fastaug robust: {e}") from None
    fails = [op for op, b in a.boundaries().items() if b.fails]
    print(f"{out}: {len(a.curves)} ops on {x.shape[0]} images; {len(fails)} fail within their range; wrote {page}")
    if synth is not None:
        print(f"{out / 'synth'}: {synth.written} samples written now, {synth.rejected} rejected, {synth.retries} redraws")
