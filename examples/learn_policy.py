"""Learn an augmentation while a small CNN trains (fastaug.learn), on a packaged data set; then save the learned
policy and a plot of its probabilities and magnitudes over training.

    python examples/learn_policy.py --data digits --epochs 30 --out learned/

Prints the held-out test accuracy per epoch next to a run without augmentation (same seed and split), writes
``learned/policy.json`` (a MarkovPolicy: load it with ``fastaug.MarkovPolicy.from_json`` and use it like RandAugment)
and ``learned/history.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fastaug.learn import DifferentiableAugment
from fastaug.learn.plot import plot_history
from fastaug.learn.train import meta_train
from fastaug.search.datasets import packaged, split


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", choices=("digits", "mnist_5k"), default="digits")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--train-set-size", type=int, default=500)
    p.add_argument("--meta-every", type=int, default=4, help="a meta step every that many training steps")
    p.add_argument("--num-ops", type=int, default=2, help="ops drawn per sample")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("learned"))
    a = p.parse_args(argv)
    images, labels = packaged(a.data)
    sp = split(len(images), a.train_set_size, a.seed)
    print(f"{a.data}: {sp.train.numel()} train, {sp.validation.numel()} validation (meta batches), {sp.test.numel()} held-out test")
    augment = DifferentiableAugment(num_ops=a.num_ops, identity=0.5, magnitude=0.3, channels=images.shape[1], seed=a.seed)
    common = {"epochs": a.epochs, "seed": a.seed, "evaluate": sp.test}
    _, trainer, learned = meta_train(images, labels, sp.train, sp.validation, augment, meta_every=a.meta_every, **common)
    _, _, plain = meta_train(images, labels, sp.train, sp.validation, None, **common)
    print("epoch  test acc (learned augmentation)  test acc (none)  s/epoch learned / none")
    for r, q in zip(learned, plain, strict=True):
        print(f"{r['epoch']:5d}  {r['accuracy']:.4f}{'':22s}  {q['accuracy']:.4f}          {r['seconds']:.2f} / {q['seconds']:.2f}")
    s = augment.summary()
    top = sorted(s["probabilities"].items(), key=lambda kv: -kv[1])[:6]
    print("learned probabilities (top 6):", ", ".join(f"{n} {v:.3f}" for n, v in top))
    a.out.mkdir(parents=True, exist_ok=True)
    path = augment.export().to_json(a.out / "policy.json")
    print(f"policy: {path}")
    try:
        print(f"plot: {plot_history(trainer.history, a.out / 'history.png', title=f'learned augmentation, {a.data}')}")
    except RuntimeError as e:
        print(f"plot skipped: {e}")


if __name__ == "__main__":
    torch.set_num_threads(1)  # a small CNN: one thread is faster than two here
    main()
