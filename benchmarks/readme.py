"""Regenerate README.md's performance table from the committed results: ``python -m benchmarks.readme``.

Every ``benchmarks/results/<device>-<date>.json`` written by ``benchmarks/bench.py`` contributes its table
(the newest file per device), between the README's ``performance table`` markers.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.bench import RESULTS_DIR, render_table

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- performance table: start -->", "<!-- performance table: end -->"


def latest_results(results_dir: Path = RESULTS_DIR) -> list[Path]:
    """The newest pipeline results file per device (files with a ``configs`` entry)."""
    newest: dict[str, tuple[str, Path]] = {}
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if "configs" not in data or data.get("pipeline_name", "reference") != "reference":
            continue
        dev = data.get("device")  # the hardware, not the host's kernel build (``platform`` differs between VMs)
        device = json.dumps({k: v for k, v in dev.items() if k != "platform"} if isinstance(dev, dict) else dev, sort_keys=True)
        if device not in newest or data.get("date", "") >= newest[device][0]:
            newest[device] = (data.get("date", ""), path)
    return [p for _, p in sorted(newest.values(), key=lambda t: str(t[1]))]


def update(readme: Path = ROOT / "README.md") -> str:
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no performance table markers")
    tables = [f"From `benchmarks/results/{p.name}`:\n\n{render_table(json.loads(p.read_text()))}" for p in latest_results()]
    body = "\n\n".join(tables) if tables else "(no committed results yet)"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{body}\n{END}{tail}"
    readme.write_text(new)
    return new


if __name__ == "__main__":
    update()
    print(f"updated {ROOT / 'README.md'}")
