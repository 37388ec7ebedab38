"""Augmentation learned while the model trains (fastaug.learn), measured on a packaged data set.

- Time per epoch, same run, round robin: no augmentation; plain training with the same DifferentiableAugment (meta
  steps off); meta-training with a meta step every 1, 4 and 8 steps.
- The probabilities' estimator: per-sample loss weighting (one augmentation pass per step) vs a relaxed
  Gumbel-softmax mixture (straight-through), which needs every op's output for every sample (one pass per op).
- Held-out test accuracy over seeds: the model trained jointly with its learned augmentation; and, retrained like the
  policy search's children (same split, recipe and epochs as ``bench_search``): no augmentation, RandAugment(2, 9),
  the Bayesian search's best policy (today's or the latest ``search-<data>-*.json``) and the exported learned policy.

Usage: ``python -m benchmarks.bench_learn [--data digits] [--seeds 0 1 2 3 4] [--epochs 30] [--meta-every 4 8]``.
Writes ``benchmarks/results/learn-<data>-<date>.json`` and ``.png`` (seed 0's probabilities and magnitudes).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time

import torch

from benchmarks.bench import RESULTS_DIR, cpu_isa, device_info, versions
from benchmarks.bench_search import _stats


def _augment(a, channels: int, seed: int, ops=None, identity: float = 0.5):
    from fastaug.learn import DifferentiableAugment

    return DifferentiableAugment(ops=ops, num_ops=a.num_ops, identity=identity, magnitude=0.3, channels=channels, seed=seed)


def epoch_times(a, images, labels, sp) -> dict:
    """Median seconds per epoch (each run's first epoch, with compilation, left out), configurations in round robin."""
    from fastaug.learn.train import meta_train

    configs = {"none": None, "same augmentation, meta off": 0, "meta every 1": 1, "meta every 4": 4, "meta every 8": 8}
    seconds: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(a.timing_rounds):
        for name, every in configs.items():
            aug = None if every is None else _augment(a, images.shape[1], 0)
            _, _, h = meta_train(images, labels, sp.train, sp.validation, aug, epochs=a.timing_epochs, meta_every=every or 0)
            seconds[name] += [r["seconds"] for r in h[1:]]
    out = {k: {"median": statistics.median(v), "values": v} for k, v in seconds.items()}
    base = out["same augmentation, meta off"]["median"]
    for k in out:
        out[k]["vs same augmentation, meta off"] = out[k]["median"] / base
    return out


def step_times(a, images, labels, sp, repeats: int = 40) -> dict:
    """Median seconds of one training step, the three kinds interleaved (robust to a machine whose speed drifts): no
    augmentation, a plain step on an augmented batch, a meta step; and the epoch-time ratio they imply for a meta step
    every k steps, ``((k - 1) plain + meta) / (k plain)``."""
    from fastaug.learn import MetaTrainer
    from fastaug.search.child import default_model

    x = images.to(torch.float32) / 255.0

    def net() -> torch.nn.Module:
        torch.manual_seed(0)
        return default_model(x.shape[1], x.shape[-1], int(labels.max()) + 1)

    trainers = {}
    for name, every in (("meta", 1), ("plain", 0)):
        model, aug = net(), _augment(a, x.shape[1], 0)
        opt, aug_opt = torch.optim.AdamW(model.parameters(), lr=1e-2), torch.optim.Adam(aug.parameters(), lr=0.05)
        trainers[name] = MetaTrainer(model, aug, opt, aug_opt, meta_every=every)
    bare = net()
    bare_opt = torch.optim.AdamW(bare.parameters(), lr=1e-2)

    def none_step(xb, yb):
        loss = torch.nn.functional.cross_entropy(bare(xb), yb)
        bare_opt.zero_grad()
        loss.backward()
        bare_opt.step()

    g = torch.Generator().manual_seed(0)
    seconds: dict[str, list[float]] = {"none": [], "plain": [], "meta": []}
    for r in range(repeats + 3):
        i = sp.train[torch.randint(0, sp.train.numel(), (a.batch_size,), generator=g)]
        v = sp.validation[torch.randint(0, sp.validation.numel(), (a.batch_size,), generator=g)]
        for name in seconds:
            t = time.perf_counter()
            if name == "none":
                none_step(x[i], labels[i])
            else:
                trainers[name].step(x[i], labels[i], x[v], labels[v], indices=i, epoch=r)
            if r >= 3:  # the first steps compile
                seconds[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    ratio = {f"meta every {k}": ((k - 1) * med["plain"] + med["meta"]) / (k * med["plain"]) for k in (1, 2, 4, 8)}
    return {"median_seconds": med, "epoch_ratio_vs_plain_augmented": ratio, "meta_vs_plain_step": med["meta"] / med["plain"],
            "plain_augmented_vs_none_step": med["plain"] / med["none"], "repeats": repeats}  # fmt: skip


def estimator_cost(a, images, repeats: int = 5) -> dict:
    """Seconds of one augmentation forward + backward for a batch: the weighting (one pass, per-sample ops) vs the
    relaxed mixture (each op on the whole batch, mixed by straight-through Gumbel-softmax weights)."""
    from fastaug.learn import op_names

    x = images[: a.batch_size].to(torch.float32) / 255.0
    idx = torch.arange(x.shape[0])
    aug = _augment(a, x.shape[1], 0)
    aug.num_ops = aug.num_slots = 1
    names = op_names(channels=x.shape[1])
    singles = [_augment(a, x.shape[1], 0, ops=[n], identity=1e-9) for n in names]

    def weighting():
        out, w = aug(x, indices=idx)
        (out.mean((1, 2, 3)) * w).sum().backward()

    def relaxed():
        logits = aug.logits
        g = -torch.log(-torch.log(torch.rand(x.shape[0], len(names) + 1).clamp(1e-9, 1 - 1e-9)))
        soft = torch.softmax(logits + g, -1)
        hard = torch.nn.functional.one_hot(soft.argmax(-1), len(names) + 1).to(soft.dtype)
        y = hard + soft - soft.detach()
        mixed = y[:, 0].view(-1, 1, 1, 1) * x
        for k, single in enumerate(singles):
            out, _ = single(x, indices=idx)
            mixed = mixed + y[:, k + 1].view(-1, 1, 1, 1) * out
        mixed.mean().backward()

    out = {}
    for name, fn in (("weighting", weighting), ("relaxed (Gumbel-softmax, straight-through)", relaxed)):
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[name] = statistics.median(times)
    out["ratio"] = out["relaxed (Gumbel-softmax, straight-through)"] / out["weighting"]
    out["ops"] = len(names)
    return out


def _bayesian_best(data: str):
    files = sorted(RESULTS_DIR.glob(f"search-{data}-*.json"))
    files = [f for f in files if not f.name.endswith("-seeds.json")]
    if not files:
        return None, None
    doc = json.loads(files[-1].read_text())
    return doc["bayesian"]["best_policy"], files[-1].name


def main(argv: list[str] | None = None) -> dict:
    import fastaug
    from fastaug.learn.plot import plot_history
    from fastaug.learn.train import meta_train
    from fastaug.policies import SubPolicies
    from fastaug.search import BayesianSearch
    from fastaug.search.datasets import as_images, split

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--train-set-size", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--meta-every", type=int, nargs="+", default=[4, 8], help="meta-training runs for each; the first is exported")
    p.add_argument("--num-ops", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timing-epochs", type=int, default=4)
    p.add_argument("--timing-rounds", type=int, default=2)
    p.add_argument("--timing-only", action="store_true", help="measure the timing again into today's results file")
    a = p.parse_args(argv)
    torch.set_num_threads(1)  # the children's setting (one thread per training)
    images, labels = as_images(a.data, None)
    sp = split(len(images), a.train_set_size, 0)
    sizes = {"train": sp.train.numel(), "validation": sp.validation.numel(), "test": sp.test.numel(), "seed": 0}
    result: dict = {"date": datetime.date.today().isoformat(), "device": device_info(torch.device("cpu")), "cpu_isa": cpu_isa(),
                    "versions": versions(), "data": a.data, "settings": vars(a), "split": sizes}  # fmt: skip
    out = RESULTS_DIR / f"learn-{a.data}-{result['date']}.json"
    print("timing ...", flush=True)
    timing = {"step_seconds": step_times(a, images, labels, sp), "epoch_seconds": epoch_times(a, images, labels, sp),
              "estimator_seconds": estimator_cost(a, images)}  # fmt: skip
    print(json.dumps({k: round(v["median"], 3) for k, v in timing["epoch_seconds"].items()}), timing["step_seconds"],
          timing["estimator_seconds"], flush=True)  # fmt: skip
    if a.timing_only:  # today's accuracies kept, the timing measured again
        result = {**json.loads(out.read_text()), **timing, "timing_device": result["device"]}
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
        return result
    result.update(timing)

    joint: dict[int, list[float]] = {}
    result["learned"] = {}
    for every in a.meta_every:  # the first value's models are plotted, exported and retrained below
        joint[every] = []
        for seed in a.seeds:
            aug = _augment(a, images.shape[1], seed)
            _, trainer, h = meta_train(images, labels, sp.train, sp.validation, aug, epochs=a.epochs, seed=seed, meta_every=every,
                                       evaluate=sp.test)  # fmt: skip
            joint[every].append(h[-1]["accuracy"])
            result["learned"][f"meta every {every}, seed {seed}"] = {"summary": aug.summary(), "policy": aug.export().to_dict()}
            if every == a.meta_every[0] and seed == a.seeds[0]:
                png = plot_history(trainer.history, RESULTS_DIR / f"learn-{a.data}-{result['date']}.png",
                                   title=f"learned augmentation, {a.data}, seed {seed}, meta step every {every}")  # fmt: skip
                exported = aug.export(seed=0)
            print(f"meta every {every}, seed {seed}: joint test accuracy {h[-1]['accuracy']:.4f}", flush=True)
    result["plot"] = png.name

    search = BayesianSearch(a.data, train_set_size=a.train_set_size, child_batch_size=a.batch_size, seed=0, workers=a.workers)
    assert torch.equal(search.splits.test, sp.test), "the search's split must be the one trained on here"
    policies = {"none": None, "RandAugment(2, 9)": fastaug.RandAugment(2, 9, interpolation="bilinear"),
                f"learned (meta every {a.meta_every[0]}, seed {a.seeds[0]}, exported)": exported}  # fmt: skip
    best, source = _bayesian_best(a.data)
    if best is not None:
        policies["Bayesian search best"] = SubPolicies(best, interpolation="bilinear")
        result["bayesian_source"] = source
    acc = search.evaluate(policies, seeds=a.seeds, epochs=a.epochs)
    jointly = {f"learned jointly, meta every {k} (the meta-trained model)": _stats(v) for k, v in joint.items()}
    result["test_accuracy"] = {**jointly, **{k: _stats(v) for k, v in acc.items()}}
    for k, v in result["test_accuracy"].items():
        print(f"{k:45s} {v['mean']:.4f} +- {v['std']:.4f}", flush=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
