"""The reward of one child training: validation accuracy at epochs that do not overfit.

``reward(history)`` = the mean of the ``last_n`` highest validation accuracies among the epochs whose training
accuracy exceeds the validation accuracy by at most ``max_gap`` (0.10). Fallback when fewer than ``last_n`` epochs
qualify: the qualifying epochs are topped up with the remaining epochs of the smallest gap (ties: the later epoch),
so a reward always averages ``min(last_n, epochs)`` epochs and an overfitting run is scored on its least overfit
epochs rather than its best ones.
"""

from __future__ import annotations

import numbers


def reward(history: list[dict], last_n: int = 3, max_gap: float = 0.10) -> float:
    """See the module docstring. ``history``: per epoch ``{"train_accuracy": ..., "val_accuracy": ...}``."""
    if isinstance(last_n, bool) or not isinstance(last_n, numbers.Integral) or last_n < 1:
        raise ValueError(f"last_n must be an int >= 1, got {last_n!r}")
    if not history:
        raise ValueError("history must hold at least one epoch")
    epochs = [(float(h["train_accuracy"]) - float(h["val_accuracy"]), float(h["val_accuracy"]), i) for i, h in enumerate(history)]
    good = sorted((e for e in epochs if e[0] <= max_gap), key=lambda e: (-e[1], -e[2]))[:last_n]
    if len(good) < last_n:
        rest = sorted((e for e in epochs if e[0] > max_gap), key=lambda e: (e[0], -e[2]))
        good += rest[: last_n - len(good)]
    return sum(e[1] for e in good) / len(good)
