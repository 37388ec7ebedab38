"""The trial log of a search: a JSON-lines file that survives a kill.

Line 1 is a header with the search's settings; every later line is one finished child training (trial number,
sample number, round, the asked point, the policy, reward, per-epoch history, seconds). A line is appended with one
``write`` and flushed to disk before the next trial is told; a line cut short by a kill is dropped (and cut off the
file) when the notebook is opened again. A notebook written with other settings is refused, naming the settings
that differ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FORMAT, VERSION = "fastaug.search.notebook", 1


class Notebook:
    """Open (or create) the notebook at ``path`` for a search with ``settings`` (a JSON-able dict)."""

    def __init__(self, path, settings: dict):
        self.path = Path(path)
        self.entries: list[dict] = []
        header = {"format": FORMAT, "version": VERSION, "settings": settings}
        if self.path.exists() and self.path.stat().st_size > 0:
            self._load(settings)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append(header)

    def _load(self, settings: dict) -> None:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        good = 0  # bytes of complete, parseable lines
        docs = []
        for line in lines[:-1]:  # the last piece has no newline: a cut line (or empty)
            try:
                docs.append(json.loads(line))
            except ValueError:
                break
            good += len(line) + 1
        if not docs or not isinstance(docs[0], dict) or docs[0].get("format") != FORMAT:
            raise ValueError(f"notebook {self.path} is not a fastaug search notebook (no header line)")
        if docs[0].get("version") != VERSION:
            raise ValueError(f"notebook {self.path} has version {docs[0].get('version')!r}; this fastaug reads {VERSION}")
        old = docs[0].get("settings", {})
        differ = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if differ:
            shown = ", ".join(f"{k}: {old.get(k)!r} there, {settings.get(k)!r} now" for k in differ)
            raise ValueError(f"notebook {self.path} was written by a search with other settings ({shown}); "
                             f"use another notebook or the same settings")  # fmt: skip
        if good < len(raw):
            with open(self.path, "r+b") as f:  # drop the line a kill cut short: later appends stay parseable
                f.truncate(good)
        self.entries = docs[1:]

    def _append(self, doc: dict) -> None:
        data = (json.dumps(doc, separators=(",", ":")) + "\n").encode()
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def append(self, entry: dict) -> None:
        """Log one finished training (flushed to disk before this returns)."""
        self._append(entry)
        self.entries.append(entry)
