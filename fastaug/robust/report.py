"""The robustness report: per op a PNG of mean diff error and fraction differing vs intensity with the boundaries,
example images at a few intensities, and one HTML page that links them by relative paths (opens from disk, no
server). Plots need matplotlib (``pip install matplotlib`` or the ``[bench]`` extra)."""

from __future__ import annotations

import html
import os
from pathlib import Path

import numpy as np
import torch

from fastaug.atomic import write_text
from fastaug.preview import _png_data_uri, grid
from fastaug.robust import labels as L
from fastaug.robust.ops import BY_NAME

EXAMPLE_INTENSITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise RuntimeError("the report's plots need matplotlib (pip install matplotlib, or the [bench] extra)") from e
    return plt


def plot_curve(curve, boundary, sampling: dict[str, tuple[float, float]], path: Path) -> Path:
    """Mean diff error and fraction differing vs intensity; the boundaries as vertical lines; the realism ranges as
    bars under the axis."""
    plt = _pyplot()
    op = BY_NAME[curve.op]
    fig, ax = plt.subplots(figsize=(5.2, 3.3))
    ax.plot(curve.intensity, curve.mean_diff_error, "o-", ms=3, label="mean diff error")
    ax.plot(curve.intensity, curve.fraction_differs, "s--", ms=3, label="fraction differing")
    ax.axvline(boundary.start, color="tab:green", lw=1, label=f"starts to differ ({boundary.start:.2f})")
    if boundary.fails:
        ax.axvline(boundary.fail, color="tab:red", lw=1, label=f"fails ({boundary.fail:.2f})")
    for k, (name, (lo, hi)) in enumerate(sampling.items()):
        ax.plot([lo, hi], [-0.06 - 0.035 * k] * 2, lw=3, color=f"C{k + 3}", label=f"range at {name}")
    ax.set_ylim(-0.07 - 0.035 * len(sampling), 1.05)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel(f"intensity (value {op.lo:g} -> {op.hi:g}: {op.unit})")
    ax.set_title(curve.op)
    ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _rgb_grid(batch: torch.Tensor, cols: int, least: int = 64) -> torch.Tensor:
    x = L.to_uint8(batch)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:, :3]
    scale = max(1, -(-least // x.shape[-1]))
    if scale > 1:
        x = torch.nn.functional.interpolate(x.float(), scale_factor=scale, mode="nearest").to(torch.uint8)
    return grid(x.cpu(), cols)


def examples(analyzer, op: str, samples: int, intensities=EXAMPLE_INTENSITIES):
    """Rows of ``samples`` images, columns at ``intensities`` of ``op`` (the search's data and draws)."""
    x, labels, kind = analyzer.images, analyzer.labels, analyzer.kind
    k = min(samples, x.shape[0])
    src = torch.arange(k).repeat_interleave(len(intensities))
    t = torch.tensor(list(intensities), dtype=torch.float64).repeat(k).unsqueeze(1)
    aug, _ = L.augment(x[src.to(x.device)], L.take(labels, kind, src), kind, (op,), t, src, analyzer.seed, analyzer.backend)
    return _rgb_grid(aug, len(intensities))


def render(analyzer, html_dir, samples: int = 3, realisms=(1.0, 0.5, 0.0)) -> Path:
    """Write ``index.html``, ``plots/<op>.png`` and ``examples/<op>.png`` under ``html_dir``."""
    from PIL import Image

    out = Path(os.fspath(html_dir))
    (out / "plots").mkdir(parents=True, exist_ok=True)
    (out / "examples").mkdir(parents=True, exist_ok=True)
    bounds = analyzer.boundaries()
    per_realism = {f"realism {r:g}": analyzer.ranges(r) for r in realisms}
    rows, sections = [], []
    for op, curve in analyzer.curves.items():
        b, spec = bounds[op], BY_NAME[op]
        sampling = {name: ranges[op] for name, ranges in per_realism.items()}
        plot_curve(curve, b, sampling, out / "plots" / f"{op}.png")
        Image.fromarray(examples(analyzer, op, samples)).save(out / "examples" / f"{op}.png")
        fail = f"{b.fail:.2f} ({spec.value(b.fail):.3g})" if b.fails else "never"
        cells = [f'<a href="#{op}">{op}</a>', html.escape(spec.unit), f"{b.start:.2f} ({spec.value(b.start):.3g})", fail]
        cells += [f"{lo:.2f}-{hi:.2f}" for lo, hi in sampling.values()]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        sections.append(
            f'<section id="{op}"><h3>{op}</h3><img class="plot" src="plots/{op}.png" alt="{op} curves">'
            f'<img class="ex" src="examples/{op}.png" alt="{op} examples"><p>Examples: rows are samples, columns intensities '
            f"{', '.join(f'{t:g}' for t in EXAMPLE_INTENSITIES)} (values "
            f"{', '.join(f'{spec.value(t):.3g}' for t in EXAMPLE_INTENSITIES)}).</p></section>"
        )
    n = next(iter(analyzer.curves.values())).samples if analyzer.curves else 0
    heads = "".join(f"<th>range at {html.escape(name)}</th>" for name in per_realism)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>fastaug robustness report</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px}}
section{{display:inline-block;vertical-align:top;margin:0 1em 1em 0;max-width:540px}}img.plot{{width:520px}}
img.ex{{max-width:520px;display:block}}p{{font-size:80%}}</style></head><body>
<h1>fastaug robustness report</h1>
<p>{len(analyzer.curves)} ops, {n} samples each. Per op and intensity (0..1 of the op's range), the mean diff error and the
fraction of samples whose output differs. The model starts to differ after the intensity where the mean diff error
first rises more than {analyzer.tolerance:g} above its value without augmentation, and fails where it has risen by
{analyzer.failure:g}. Realism r samples intensities from [0, fail + r (start - fail)].</p>
<table><tr><th>op</th><th>value</th><th>starts to differ after (value)</th><th>fails at (value)</th>{heads}</tr>
{"".join(rows)}</table>
{"".join(sections)}
</body></html>
"""
    return write_text(out / "index.html", page)


def synth_preview(result, path, limit: int = 32) -> Path:
    """A self-contained page with the first accepted synthetic samples and their ops."""
    from PIL import Image

    path = Path(os.fspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    recs = [r for r in result.records if r.get("image")][:limit]
    items = []
    for r in recs:
        with Image.open(result.out / r["image"]) as im:
            x = torch.from_numpy(np.asarray(im).copy())
        x = x.unsqueeze(0).unsqueeze(0) if x.dim() == 2 else x.permute(2, 0, 1).unsqueeze(0)
        ops = ", ".join(f"{op} {v['intensity']:.2f}" for op, v in r["ops"].items())
        label = html.escape(str(r["label"]))[:80]
        items.append(f'<figure><img src="{_png_data_uri(_rgb_grid(x, 1))}"><figcaption>#{r["index"]} label {label}<br>'
                     f"{html.escape(ops)}<br>diff error {r['diff_error']:.2f}, attempts {r['attempts']}</figcaption></figure>")  # fmt: skip
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>fastaug robust synthesis</title>
<style>body{{font-family:sans-serif}}figure{{display:inline-block;margin:4px;font-size:70%;max-width:160px}}</style></head><body>
<h1>synthetic samples</h1><p>{result.written} written now, {result.rejected} rejected, {result.retries} redraws;
first {len(recs)} shown.</p>{"".join(items)}</body></html>
"""
    return write_text(path, page)
