"""A one-line progress bar on stderr for long jobs (synthesis, search)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``update(done, note)`` redraws ``[####    ] done/total rate unit note`` at most 5 times a second; the rate is
    per second times ``per`` (3600 for a rate per hour), counted from ``start`` (work done before this run)."""

    def __init__(self, total: int, unit: str = "img/s", stream=None, start: int = 0, per: float = 1.0):
        self.total, self.unit, self.stream, self.per = total, unit, stream or sys.stderr, per
        self.start_time, self.start, self.last = time.perf_counter(), start, 0.0

    def update(self, done: int, note: str = "") -> None:
        now = time.perf_counter()
        if now - self.last < 0.2 and done < self.total:
            return
        self.last = now
        rate = (done - self.start) / max(now - self.start_time, 1e-9)
        bar = "#" * (30 * min(done, self.total) // max(self.total, 1))
        self.stream.write(f"\r[{bar:<30}] {done}/{self.total} {rate * self.per:.0f} {self.unit} {note}".rstrip())
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
