"""A one-line progress bar on stderr for long jobs (synthesis, search)."""

from __future__ import annotations

import sys
import time


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """``update(done, note)`` redraws ``[####    ] done/total rate unit ETA m:ss note`` at most 5 times a second; the
    rate is per second times ``per`` (3600 for a rate per hour), counted from ``start`` (work done before this run);
    the ETA assumes that rate for the rest. The line ends once ``done`` reaches ``total``, or at :meth:`finish`."""

    def __init__(self, total: int, unit: str = "img/s", stream=None, start: int = 0, per: float = 1.0):
        self.total, self.unit, self.stream, self.per = total, unit, stream or sys.stderr, per
        self.start_time, self.start, self.last = time.perf_counter(), start, 0.0
        self.closed, self.width = False, 0

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        now = time.perf_counter()
        if self.closed or (now - self.last < 0.2 and done < self.total and not force):
            return
        self.last = now
        elapsed = max(now - self.start_time, 1e-9)
        rate = (done - self.start) / elapsed
        bar = "#" * (30 * min(done, self.total) // max(self.total, 1))
        if done >= self.total:
            eta = f"in {_duration(elapsed)}"
        else:
            eta = f"ETA {_duration((self.total - done) / rate)}" if rate > 0 else "ETA ?"
        line = f"[{bar:<30}] {done}/{self.total} {rate * self.per:.0f} {self.unit} {eta} {note}".rstrip()
        self.stream.write(f"\r{line}{' ' * (self.width - len(line))}")  # blanks over the rest of a longer last line
        self.width = len(line)
        if done >= self.total:
            self.stream.write("\n")
            self.closed = True
        self.stream.flush()

    def finish(self, done: int, note: str = "") -> None:
        """Draw the last state and end the line (if :meth:`update` has not already)."""
        if not self.closed:
            self.update(done, note, force=True)
            if not self.closed:
                self.stream.write("\n")
                self.stream.flush()
                self.closed = True
