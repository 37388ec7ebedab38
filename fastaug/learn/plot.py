"""The learned probabilities and magnitudes over training, as a PNG (matplotlib)."""

from __future__ import annotations

from pathlib import Path


def plot_history(history: list[dict], path, top: int = 8, title: str = "learned augmentation") -> Path:
    """Two panels from :attr:`MetaTrainer.history <fastaug.learn.MetaTrainer.history>`: each op's probability and
    each op's normalised magnitude against the training step (the ``top`` ops by final probability in colour, Identity
    dashed, the others grey)."""
    if not isinstance(history, list) or not history or not all(isinstance(h, dict) and "probabilities" in h for h in history):
        raise ValueError("history must be a non-empty list of MetaTrainer.history entries")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("the PNG needs matplotlib (pip install matplotlib, or the [bench] extra)") from e
    steps = [h["step"] for h in history]
    final = history[-1]["probabilities"]
    ranked = [n for n in sorted(final, key=final.get, reverse=True) if n != "Identity"][:top]
    fig, (ax_p, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name in final:
        shown = name in ranked
        style = {"label": name, "lw": 1.6} if shown else {"color": "0.8", "lw": 0.8}
        if name == "Identity":
            style = {"label": name, "color": "k", "ls": "--", "lw": 1.6}
        ax_p.plot(steps, [h["probabilities"][name] for h in history], **style)
        if name != "Identity":
            ax_m.plot(steps, [h["magnitudes"][name] for h in history], **({"label": name, "lw": 1.6} if shown else style))
    ax_p.set(xlabel="training step", ylabel="probability", title="op probabilities")
    ax_m.set(xlabel="training step", ylabel="magnitude (normalised)", title="op magnitudes", ylim=(-0.02, 1.02))
    ax_p.legend(fontsize=8, ncol=2)
    ax_m.legend(fontsize=8, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
