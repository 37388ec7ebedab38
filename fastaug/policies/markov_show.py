"""``fastaug markov show``: a fitted MarkovPolicy as a printed table and a PNG (transition heatmap, magnitude curves)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from fastaug.policies.markov import STATES, MarkovPolicy


def _shown(policy: MarkovPolicy) -> list[str]:
    """Identity and the states a chain can reach (the others have probability 0 everywhere)."""
    return [s for s in STATES if s == "Identity" or s in policy.reachable]


def table(policy: MarkovPolicy) -> str:
    """Per reachable op: initial probability, the most likely next state, the magnitude's mean / std, the mean
    probability."""
    rows = ["| state | initial | most likely next (p) | magnitude mean | magnitude std | mean probability | occurrences |",
            "|---|---:|---|---:|---:|---:|---:|"]  # fmt: skip
    for state in _shown(policy):
        i = STATES.index(state)
        nxt = int(torch.argmax(policy.transition[i]))
        cells = [state, f"{float(policy.initial[i]):.3f}", f"{STATES[nxt]} ({float(policy.transition[i, nxt]):.2f})"]
        m = policy.magnitudes.get(state)
        if m is None:
            cells += ["", "", "", ""]
        else:
            has = m.get("has_magnitude", True)
            cells += [f"{m['mean']:.3f}" if has else "-", f"{m['std']:.3f}" if has else "-", f"{m['probability']:.3f}",
                      str(m.get("occurrences", ""))]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot(policy: MarkovPolicy, path) -> Path:
    """The transition matrix as a heatmap (initial distribution as the first row) and each op's magnitude density."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("the PNG needs matplotlib (pip install matplotlib, or the [bench] extra)") from e
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(15, 6.5), gridspec_kw={"width_ratios": [1.1, 1]})
    shown = _shown(policy)
    idx = torch.tensor([STATES.index(s) for s in shown])
    grid = torch.cat([policy.initial[idx].unsqueeze(0), policy.transition[idx][:, idx]]).numpy()
    im = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=max(0.05, float(grid.max())))
    ax.set_xticks(range(len(shown)), shown, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(shown) + 1), ["(initial)", *shown], fontsize=8)
    ax.set_xlabel("next state")
    ax.set_ylabel("state")
    ax.set_title("transition probabilities (first row: initial)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    bx.set_prop_cycle(color=plt.get_cmap("tab20").colors)
    xs = torch.linspace(0.0, 1.0, 201)
    for state in shown[1:]:
        m = policy.magnitudes[state]
        if not m.get("has_magnitude", True) or m.get("occurrences", 1) == 0:
            continue
        sd = max(m["std"], 1e-3)
        density = torch.exp(-0.5 * ((xs - m["mean"]) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))
        bx.plot(xs.numpy(), density.numpy(), label=f"{state} ({m['mean']:.2f} +- {m['std']:.2f})")
    bx.set_xlabel("normalised magnitude (0..1 of the op's range; clipped)")
    bx.set_ylabel("density (before clipping)")
    bx.set_title("magnitude distributions")
    bx.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
