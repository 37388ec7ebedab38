"""Atomic file writes: a temporary file in the same folder, flushed to disk, renamed over the target.

A kill leaves the old file or the new one under the final name, never a part; the temporary files it leaves are
named ``.<name>.<random>.tmp`` (:func:`remove_temporaries` clears them). :func:`check_settings` keeps a run's
settings next to its outputs and refuses a rerun with other settings (synthesis, robustness synthesis).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def open_atomic(path, mode: str = "wb"):
    """``with open_atomic(path) as f: f.write(...)``: ``path`` appears complete when the block ends without error."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as open() would create it
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` so that a reader (or a kill) sees the old file or the new one, never a part."""
    with open_atomic(path, "w") as f:
        f.write(text)
    return Path(path)


def write_bytes(path, data: bytes) -> Path:
    with open_atomic(path, "wb") as f:
        f.write(data)
    return Path(path)


def remove_temporaries(folder) -> int:
    """Delete the temporary files a killed writer left in ``folder``; returns how many."""
    n = 0
    for stale in Path(folder).glob(".*.tmp"):
        stale.unlink(missing_ok=True)
        n += 1
    return n


def check_settings(path, settings: dict, what: str) -> None:
    """Write ``settings`` as JSON to ``path``, or, if it exists, raise a ValueError naming the settings that differ
    (``what``: the folder's name in the message, e.g. "out: runs/x holds a synthesis")."""
    path = Path(path)
    if not path.exists():
        write_text(path, json.dumps(settings, indent=1) + "\n")
        return
    old = json.loads(path.read_text())
    if old != settings:
        keys = sorted(set(old) | set(settings), key=str)
        changed = [k for k in keys if old.get(k) != settings.get(k)]
        diff = "; ".join(f"{k}: {old.get(k, '(none)')!r} then, {settings.get(k, '(none)')!r} now" for k in changed)
        raise ValueError(f"{what} with other settings ({diff}); use another output folder or the same settings")
