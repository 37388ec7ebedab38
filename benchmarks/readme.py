"""Regenerate the results tables from the committed results: ``python -m benchmarks.readme``.

- README.md, between the ``performance table`` markers: the reference pipeline (``<device>-<date>[-avx2].json``);
- benchmarks/README.md, between the ``blur-noise-dropout`` markers: the second pipeline;
- benchmarks/README.md, between the ``per-op`` markers: each op alone next to its limits (``per-op-*.json``).

Each table comes from the newest file per device and code ISA (native, or AVX2 code on an AVX-512 host).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench import RESULTS_DIR, isa_tag, render_table
from benchmarks.per_op import render as render_per_op

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- performance table: start -->", "<!-- performance table: end -->"


def _kind(data: dict) -> str:
    if "ops" in data and "peak_gflops" in data:
        return "per-op"
    if "configs" in data:
        return data.get("pipeline_name", "reference")
    return ""


def latest_results(kind: str = "reference", results_dir: Path = RESULTS_DIR) -> list[Path]:
    """The newest results file of ``kind`` (a pipeline name, or ``per-op``) per device and code ISA."""
    newest: dict[str, tuple[str, Path]] = {}
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if _kind(data) != kind:
            continue
        dev = data.get("device")  # the hardware, not the host's kernel build (``platform`` differs between VMs)
        device = json.dumps({k: v for k, v in dev.items() if k != "platform"} if isinstance(dev, dict) else dev, sort_keys=True)
        device += isa_tag(data.get("cpu_isa", {}))
        if device not in newest or data.get("date", "") >= newest[device][0]:
            newest[device] = (data.get("date", ""), path)
    return [p for _, p in sorted(newest.values(), key=lambda t: str(t[1]))]


def _replace(path: Path, start: str, end: str, kind: str, render: Callable[[dict], str]) -> str:
    text = path.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} / {end} markers")
    tables = [f"From `benchmarks/results/{p.name}`:\n\n{render(json.loads(p.read_text()))}" for p in latest_results(kind)]
    body = "\n\n".join(tables) if tables else "(no committed results yet)"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{start}\n{body}\n{end}{tail}"
    path.write_text(new)
    return new


def update(readme: Path = ROOT / "README.md", bench_readme: Path = ROOT / "benchmarks" / "README.md") -> None:
    _replace(readme, START, END, "reference", render_table)
    _replace(bench_readme, "<!-- blur-noise-dropout: start -->", "<!-- blur-noise-dropout: end -->", "blur-noise-dropout", render_table)
    _replace(bench_readme, "<!-- per-op: start -->", "<!-- per-op: end -->", "per-op", render_per_op)


if __name__ == "__main__":
    update()
    print(f"updated {ROOT / 'README.md'} and {ROOT / 'benchmarks' / 'README.md'}")
