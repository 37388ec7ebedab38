"""A search's report: reward per trial with the best so far (PNG), the best sub-policies as a table, a few training
images augmented by the best policy, every trial; one self-contained HTML page next to the PNGs."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import torch

from fastaug.atomic import write_text
from fastaug.preview import _png_data_uri, grid


def reward_chart(trials, width: int = 720, height: int = 360) -> np.ndarray:
    """Each trial's mean reward (dots) and the best so far (a step line), as an RGB uint8 image."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 60, 20, 20, 40
    rewards = [tr.reward for tr in trials if not math.isnan(tr.reward)]
    lo, hi = (min(rewards), max(rewards)) if rewards else (0.0, 1.0)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.01, hi + 0.01
    n = max(len(trials), 2)

    def xy(i: float, r: float) -> tuple[float, float]:
        return (left + (width - left - right) * i / (n - 1), top + (height - top - bottom) * (hi - r) / (hi - lo))

    d.rectangle([left, top, width - right, height - bottom], outline="black")
    for k in range(5):
        r = lo + (hi - lo) * k / 4
        y = xy(0, r)[1]
        d.line([left - 4, y, left, y], fill="black")
        d.text((4, y - 6), f"{r:.3f}", fill="black")
    for i in range(0, n, max(1, n // 10)):
        x = xy(i, lo)[0]
        d.text((x - 4, height - bottom + 6), str(i), fill="black")
    d.text((width // 2 - 40, height - 16), "trial", fill="black")
    best, line = -math.inf, []
    for i, tr in enumerate(trials):
        if math.isnan(tr.reward):
            continue
        best = max(best, tr.reward)
        line.append(xy(i, best))
        x, y = xy(i, tr.reward)
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(31, 119, 180))
    if len(line) > 1:
        steps = [line[0]]
        for a, b in zip(line, line[1:]):
            steps += [(b[0], a[1]), b]
        d.line(steps, fill=(214, 39, 40), width=2)
    d.text((left + 8, top + 4), "reward per trial (dots), best so far (line)", fill="black")
    return np.asarray(img)


def _policy_rows(policy: list) -> str:
    rows = []
    for i, sub in enumerate(policy):
        for j, (op, p, m) in enumerate(sub):
            mag = "-" if m is None else f"{m:.3f}"
            rows.append(f"<tr><td>{i if j == 0 else ''}</td><td>{html.escape(op)}</td><td>{p:.3f}</td><td>{mag}</td></tr>")
    return "\n".join(rows)


def write(out_dir, search, samples: int = 24) -> Path:
    """Write ``rewards.png``, ``samples.png`` and ``report.html`` for a finished :class:`BayesianSearch`."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    chart = reward_chart(search.trials)
    Image.fromarray(chart).save(out / "rewards.png")
    best = search.best()
    idx = search.splits.train[:samples]
    x = search.images[idx]
    shown = search.best_policy()(x, indices=idx, epoch=0)
    both = torch.cat([x, shown]).expand(-1, 3, -1, -1) if x.shape[1] == 1 else torch.cat([x, shown])
    scale = max(1, 64 // x.shape[-1])
    both = torch.nn.functional.interpolate(both.float(), scale_factor=scale, mode="nearest").to(torch.uint8)
    picture = grid(both, cols=min(samples, 12))
    Image.fromarray(picture).save(out / "samples.png")
    trainings = sum(len([r for r in tr.rewards if r is not None]) for tr in search.trials)
    seconds = sum(tr.seconds for tr in search.trials)
    rows = "\n".join(
        f"<tr><td>{tr.trial}</td><td>{tr.round}</td><td>{tr.reward:.4f}</td>"
        f"<td>{', '.join(f'{r:.4f}' for r in tr.rewards if r is not None)}</td><td>{tr.seconds:.1f}</td>"
        f"<td><code>{html.escape(json.dumps(tr.policy))}</code></td></tr>"
        for tr in search.trials
    )
    settings = html.escape(json.dumps(search.settings(), indent=1))
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>fastaug search</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px}}
code{{font-size:80%}}</style></head><body>
<h1>fastaug policy search ({html.escape(search.method)})</h1>
<p>{len(search.trials)} trials, {trainings} child trainings, {seconds:.0f} s of training
({3600.0 * trainings / max(seconds, 1e-9):.0f} trainings per hour of one worker; wall time of the last run
{search.total_seconds:.0f} s with {search.workers} worker(s)). Best: trial {best.trial}, reward {best.reward:.4f}.</p>
<h2>Reward</h2><img src="{_png_data_uri(chart)}">
<h2>Best sub-policies</h2><p>Per sample one sub-policy, uniformly; each op applies with its probability at its
magnitude (normalised to 0..1 of the op's range).</p>
<table><tr><th>sub-policy</th><th>op</th><th>probability</th><th>magnitude</th></tr>
{_policy_rows(best.policy)}</table>
<h2>Samples</h2><p>Training images (first rows) and the same images augmented by the best policy (last rows).</p>
<img src="{_png_data_uri(picture)}">
<h2>Trials</h2><table><tr><th>trial</th><th>round</th><th>reward</th><th>per training</th><th>seconds</th><th>policy</th></tr>
{rows}</table>
<h2>Settings</h2><pre>{settings}</pre></body></html>
"""
    return write_text(out / "report.html", page)
