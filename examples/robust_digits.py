"""Robustness boundaries of a small CNN on scikit-learn's digits, synthetic data at three realisms, retraining.

Per seed: train a CNN on the real training split; find its boundaries on training images (ground-truth labels);
synthesize a training set and a held-out test set at realism 0, 0.5 and 1 (the test set from the held-out real
images); retrain one model per realism on real + synthetic training data; evaluate every model on the held-out real
images and on each held-out synthetic set. Prints a table and writes JSON (``--json``); ``--report DIR`` writes the
first seed's HTML report.

    python examples/robust_digits.py --seeds 0 1 2 --json results.json --report robust-report

The same file is a model for the command line: ``fastaug robust --model examples/robust_digits.py --data digits
--out report/`` calls :func:`load_predict` (trains seed 0's model, a few seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as nnf

from fastaug.robust import Analyzer
from fastaug.robust import synthesize as S
from fastaug.search import datasets
from fastaug.search.child import default_model

OPS = ("brighten", "darken", "contrast", "decontrast", "gamma_brighten", "gamma_darken", "posterize", "solarize",
       "sharpness", "gaussian_blur", "motion_blur", "gaussian_noise", "pixel_dropout", "salt_and_pepper", "fog", "downscale",
       "rotate", "rotate_cw", "shear_x", "shear_y", "translate_x", "translate_y", "zoom_in", "zoom_out", "perspective",
       "crop", "elastic", "erase", "coarse_dropout")  # fmt: skip
REALISMS = (0.0, 0.5, 1.0)


def train(x: torch.Tensor, y: torch.Tensor, seed: int, epochs: int = 8, batch: int = 64, lr: float = 1e-2) -> torch.nn.Module:
    """A fresh CNN (fastaug.search.child's) trained on uint8 images, inputs scaled to [0, 1]."""
    torch.manual_seed(seed)
    net = default_model(x.shape[1], x.shape[-1], 10)
    steps = epochs * -(-x.shape[0] // batch)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    order = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(x.shape[0], generator=order)
        for i in range(0, x.shape[0], batch):
            idx = perm[i : i + batch]
            loss = nnf.cross_entropy(net(x[idx].float() / 255.0), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return net.eval()


def as_predict(net: torch.nn.Module):
    def predict(batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(batch.float() / 255.0).argmax(1)

    return predict


def split(seed: int):
    x, y = datasets.packaged("digits")
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    test, tr = perm[:360], perm[360:]
    return x[tr], y[tr], x[test], y[test]


def load_predict():
    """Seed 0's model trained on the real training split (the command line's entry point)."""
    x, y, _, _ = split(0)
    return as_predict(train(x, y, 0))


def accuracy(analyzer: Analyzer, x: torch.Tensor, y) -> float:
    return 1.0 - analyzer.evaluate(x, torch.as_tensor(y))["avg_diff_error"]


def run_seed(seed: int, work: Path, search_samples: int, step: float, report: Path | None) -> dict:
    t0 = time.perf_counter()
    xtr, ytr, xte, yte = split(seed)
    base = train(xtr, ytr, seed)
    a = Analyzer(as_predict(base), ops=OPS, seed=seed, progress=False)
    a.search_boundaries(xtr[:search_samples], ytr[:search_samples], step=step, cache=work / "boundaries.json")
    t_search = time.perf_counter() - t0
    if report is not None:
        a.render(report)
    synth_train, synth_test = {}, {}
    for r in REALISMS:
        tr = a.synthesize(xtr, ytr, realism=r, count=xtr.shape[0], out=work / f"train-r{r}")
        te = a.synthesize(xte, yte, realism=r, count=xte.shape[0], out=work / f"test-r{r}")
        synth_train[r], synth_test[r] = S.load(tr.out)[:2], S.load(te.out)[:2]
    models = {"real only": base}
    for r in REALISMS:
        sx, sy = synth_train[r]
        models[f"real + synthetic r={r:g}"] = train(torch.cat([xtr, sx]), torch.cat([ytr, torch.tensor(sy)]), seed)
    rows = {}
    for name, net in models.items():
        ev = Analyzer(as_predict(net), progress=False)
        row = {"real test": accuracy(ev, xte, yte)}
        for r in REALISMS:
            row[f"synthetic test r={r:g}"] = accuracy(ev, *synth_test[r])
        rows[name] = row
    bounds = {op: [b.start, b.fail if b.fails else None] for op, b in a.boundaries().items()}
    return {"seed": seed, "accuracy": rows, "boundaries": bounds, "search_seconds": t_search, "seconds": time.perf_counter() - t0}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--search-samples", type=int, default=200)
    p.add_argument("--step", type=float, default=0.1)
    p.add_argument("--json", default=None)
    p.add_argument("--report", default=None, help="write the first seed's HTML report here")
    args = p.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="robust-digits-") as tmp:
        for k, seed in enumerate(args.seeds):
            report = Path(args.report) if args.report and k == 0 else None
            runs.append(run_seed(seed, Path(tmp) / f"seed{seed}", args.search_samples, args.step, report))
            print(f"seed {seed}: {runs[-1]['seconds']:.0f} s")
    cols = list(runs[0]["accuracy"]["real only"])
    print("| model | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    summary = {}
    for name in runs[0]["accuracy"]:
        cells = []
        for c in cols:
            vals = [run["accuracy"][name][c] for run in runs]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            summary.setdefault(name, {})[c] = {"mean": statistics.mean(vals), "std": sd}
            cells.append(f"{statistics.mean(vals):.3f} +- {sd:.3f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "report")}
        doc = {"settings": settings, "ops": list(OPS), "summary": summary, "runs": runs}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
