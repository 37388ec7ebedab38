"""Synthetic dataset generation: N augmented copies of a labelled image folder, at throughput, on any number of workers.

Output ``k`` comes from source image ``k % n_sources`` with the draws of dataset index ``k`` (epoch 0), so every
output is a pure function of (inputs, policy, seed, k): a killed run resumes by skipping the outputs already on
disk and writes exactly the files a clean run would, and any number of workers (local processes or Ray tasks)
write the same bytes. Labels come from the input's folders (``DIR/<label>/<image>``).

The outputs ``0 <= k < count`` are cut into ranges of ``shard_size`` (``[0, S), [S, 2S), ...``): a range is the unit
of work a worker takes, and of a shard format, one shard. A worker runs the ranges it is given in order through one
pipeline (a local process or a Ray task gets one range at a time; a single-process run gets all of them): its engine
goes on with the next range's images while a range's last outputs are encoded and its shard closed, so no core idles
at a range's end (a batch may hold outputs of two ranges: output ``k`` depends on ``k`` only). Decode threads read the
sources ahead (about 128 MiB of decoded pixels), images of one size and channel count gather into a batch (a batch runs when it
holds ``batch`` images or 64 MiB of pixels, when too many images wait, or, with a core idle (an engine thread idle and
the decodes under way fewer than the cores), when the next source is still decoding and it holds ``batch / 8``: memory
stays flat and the engine busy). The batch is evened out over the outputs to write (at most ``batch``, the number of
batches a multiple of the engine threads: :func:`_batch_size`), so the engine threads finish together. Engine threads
augment batches side by side (one per core of the worker, each call on one thread: torch's thread count is 1 meanwhile;
a contiguous [B,C,H,W] batch: sources are transposed to CxHxW once, when decoded, and the outputs back to HxWxC by a
numba loop; the kernels run 1.6x slower on channels-last views), and encode threads write the results (Pillow's codecs
release the GIL; PNG is filtered by fastaug and deflated by zlib, Pillow's bytes: :mod:`fastaug.imagefiles`; ``npy``
needs no encoding: a batch's consecutive outputs go straight to the shard's writer thread as one block). Batches side by
side rather than each call on every core: on 2 cores a call's many small torch ops (draws, equalize tables) woke
torch's OpenMP threads, which spun on the cores the numba kernels needed (measured 2-3x slower under load; see
``benchmarks/README.md``), and one call's Python work now overlaps the other's kernels.

Decoded sources are cached: every range uses the same sources again (output ``k`` uses source ``k % n``), so a worker
process keeps the decoded images of one run in memory, least recently used dropped beyond ``cache_mb`` (default 512
MiB per worker; sources that do not all fit are decoded again when they come round). Each source is decoded once
per worker process instead of once per range (within one pipeline, the read-ahead also keeps the sources it holds).
Formats:

- ``png`` / ``jpeg`` / ``webp``: ``out/<label>/<source>_<k>.<ext>``, one file per output;
- ``tar`` / ``npy``: one shard per range (``fastaug.shards``: WebDataset-style tar, or raw uint8 with an index).

Every file goes through :mod:`fastaug.atomic` (a temporary name renamed into place), so a kill never leaves a torn
file under a final name. ``synth.json`` keeps the settings (a rerun with others is refused; they include the engine
backend, resolved: ``auto`` is ``numba``, the backend every worker then uses) and ``labels.csv`` lists every output
written (``file, label, source, index``; for shards ``file`` is the shard), merged at the end.
Unreadable sources (truncated, corrupt) are skipped with a warning naming the file, their outputs left out and
counted as ``skipped`` (or the run stops, ``strict=True``); a rerun tries them again. Outputs that were made but could
not be encoded or written (a codec's error, e.g. a source wider than WebP's 16,383 pixels; a file that could not be
written, e.g. permission denied) are ``failed``: left out with a warning naming the output and the reason, counted
apart from the skipped ones, and tried again by a rerun (a shard holding one is written again); ``strict=True``
stops at the first. An error no later output can escape stops the run instead: disk full, quota exceeded, read-only
or I/O error (``_STOPPING_ERRNOS``), an engine error, any write error of a shard (its file is one stream), and a
file whose bytes were written but whose fsync or rename failed (raised when its range ends).
"""

from __future__ import annotations

import csv
import errno
import functools
import hashlib
import io
import json
import os
import re
import tempfile
import threading
import time
import uuid
import warnings
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fastaug import imagefiles as IF
from fastaug import shards as SH
from fastaug.atomic import check_settings, remove_temporaries, write_text
from fastaug.progress import Progress

IMAGE_SUFFIXES = IF.IMAGE_SUFFIXES
FORMATS = ("png", "jpeg", "webp", "tar", "npy")
MANIFEST = "labels.csv"
SETTINGS = "synth.json"


class SkippedImageWarning(UserWarning):
    """A source image could not be read; its outputs were skipped."""


class FailedOutputWarning(UserWarning):
    """An output could not be encoded or written; it was left out (a rerun tries it again)."""


class FailedOutput(RuntimeError):
    """``strict=True``: an output could not be encoded or written."""


# OSError numbers that stop a run at once rather than fail one output: no later output could be written either
_STOPPING_ERRNOS = frozenset(getattr(errno, n) for n in ("ENOSPC", "EDQUOT", "EROFS", "EIO") if hasattr(errno, n))
WARN_FAILED = 10  # failed outputs warned one by one; beyond them one warning with the count


@dataclass(frozen=True)
class Source:
    name: str  # file stem, or a built-in name
    label: str  # the folder name ('' for images at the top level)
    path: str  # the file, or "builtin:<i>"

    def planes(self, options: IF.DecodeOptions | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(HxWxC uint8 with C = 1 or 3, HxW alpha or None); raises :class:`fastaug.imagefiles.UnreadableImage`."""
        options = options or IF.DecodeOptions()
        if self.path.startswith("builtin:"):
            return IF.finish(_builtin_images()[int(self.path.split(":", 1)[1])], None, options)
        return IF.decode(self.path, options)

    def load(self) -> np.ndarray:
        """HxWx3 uint8 (grayscale repeated, alpha composited on white)."""
        return self.planes(IF.DecodeOptions(gray="rgb"))[0]


@functools.lru_cache(maxsize=1)
def _builtin_images() -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    return list(load_sample_images().images)


def builtin_sources() -> list[Source]:
    """scikit-learn's two bundled photos, one class each."""
    from sklearn.datasets import load_sample_images

    stems = [Path(name).stem for name in load_sample_images().filenames]
    return [Source(stem, stem, f"builtin:{i}") for i, stem in enumerate(stems)]


def folder_sources(root: str | os.PathLike) -> list[Source]:
    """Images under ``root``: ``root/<label>/<name>.<ext>`` (any depth-1 folder is a label) or ``root/<name>.<ext>``,
    ``<ext>`` one of ``IMAGE_SUFFIXES`` (any case); hidden files are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--input must be a folder of images or 'builtin', got {str(root)!r}")
    found = []
    for path in sorted(root.rglob("*")):
        if not IF.is_image_file(path):
            continue
        rel = path.relative_to(root)
        if len(rel.parts) > 2:
            raise ValueError(f"input images must sit in {root}/<label>/, found {rel}")
        label = rel.parts[0] if len(rel.parts) == 2 else ""
        found.append(Source(path.stem, label, str(path.resolve())))
    if not found:
        raise ValueError(f"input folder {str(root)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def sources_fingerprint(sources: list[Source]) -> str:
    """A hash of the sources' labels and file names in order: a changed input folder changes which source k uses."""
    text = "\n".join(f"{s.label}/{Path(s.path).name}" for s in sources)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Options:
    """How outputs are written. ``png_level``: zlib level 0-9; ``quality``: JPEG / WebP quality 1-100; ``shard_size``:
    outputs per range (a shard, and a worker's unit of work); ``shard_image``: the image encoding inside tar shards."""

    format: str = "png"
    png_level: int = 6
    quality: int = 90
    shard_size: int = 1000
    shard_image: str = "png"
    decode: IF.DecodeOptions = field(default_factory=IF.DecodeOptions)

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {FORMATS}, got {self.format!r}")
        if not (isinstance(self.png_level, int) and 0 <= self.png_level <= 9):
            raise ValueError(f"--png-level must be 0..9, got {self.png_level!r}")
        if not (isinstance(self.quality, int) and 1 <= self.quality <= 100):
            raise ValueError(f"--quality must be 1..100, got {self.quality!r}")
        if not (isinstance(self.shard_size, int) and self.shard_size >= 1):
            raise ValueError(f"--shard-size must be a positive integer, got {self.shard_size!r}")
        if self.shard_image not in IF.FORMATS:
            raise ValueError(f"--shard-image must be one of {IF.FORMATS}, got {self.shard_image!r}")
        if self.decode.keep_alpha and self.codec == "jpeg":
            raise ValueError("--keep-alpha needs a format with alpha: JPEG has none (use png or webp)")

    @property
    def sharded(self) -> bool:
        return self.format in SH.SHARD_FORMATS

    @property
    def codec(self) -> str | None:
        """The image encoding of one output (None: raw pixels)."""
        return None if self.format == "npy" else self.shard_image if self.format == "tar" else self.format

    @property
    def extension(self) -> str:
        return IF.EXTENSIONS[self.codec] if self.codec else ""

    def settings(self) -> dict:
        """What decides the output bytes."""
        s = {"format": self.format, "gray": self.decode.gray, "keep_alpha": self.decode.keep_alpha,
             "background": list(self.decode.background)}  # fmt: skip
        if self.codec == "png":
            s["png_level"] = self.png_level
        elif self.codec is not None:
            s["quality"] = self.quality
        if self.sharded:
            s["shard_size"], s["shard_image"] = self.shard_size, self.shard_image
        return s


def output_name(source: Source, k: int, extension: str = ".png") -> str:
    return str(Path(source.label) / f"{source.name}_{k:07d}{extension}")


@dataclass
class Job:
    """Everything a worker needs (picklable: sent to local processes and Ray tasks)."""

    sources: list[Source]
    out: str
    count: int
    policy: torch.nn.Module
    options: Options
    batch: int = 128
    backend: str = "auto"
    strict: bool = False
    decode_threads: int = 2
    encode_threads: int = 2
    torch_threads: int | None = None  # None: leave the process's setting
    engine_threads: int = 1  # batches augmented at once, each on one thread (> 1: torch's threads set to 1 meanwhile)
    cache_bytes: int = 512 << 20  # decoded sources kept per worker process (see the module docstring)
    run: str = ""  # this run's id, the key of its decoded sources in a process's cache ("": not cached)

    @functools.cached_property
    def labels(self) -> list[str]:
        return sorted({s.label for s in self.sources})

    def meta(self, k: int) -> dict:
        s = self.sources[k % len(self.sources)]
        return {"index": k, "label": s.label, "class": self.labels.index(s.label), "source": s.name}

    def units(self) -> list[tuple[int, int]]:
        size = self.options.shard_size
        return [(a, min(a + size, self.count)) for a in range(0, self.count, size)]


@dataclass
class Summary:
    """A run's result: ``written`` now, ``existing`` (done before), ``skipped`` outputs (unreadable source, listed in
    ``unreadable``: file -> reason), ``failed`` outputs (made but not encoded or written, listed in ``failures``:
    output -> reason; a shard's output as ``<shard>:<k>.<ext>``), ``seconds`` and the rate of this run, the engine
    ``backend`` it ran on."""

    out: Path
    count: int
    written: int = 0
    existing: int = 0
    skipped: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    failed: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    backend: str = ""

    @property
    def rate(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        return (f"{self.out}: {self.count} outputs: {self.written} written now, {self.existing} already there, {self.skipped} "
                f"skipped ({len(self.unreadable)} unreadable files), {self.failed} failed (not encoded or written); "
                f"{self.seconds:.1f} s, {self.rate:.0f} img/s"
                + (f" ({self.backend} backend)" if self.backend else ""))  # fmt: skip


# -- one range -----------------------------------------------------------------------------------------------------


class _Committer:
    """Atomic file writes split in two: an encode thread writes the bytes to a temporary beside the file (named as
    :mod:`fastaug.atomic` names them, so a rerun clears what a kill left), and this one thread makes it durable and
    renames it into place (fsync, then rename: the same guarantee as :func:`fastaug.atomic.write_bytes`). An encode
    thread so never waits for the disk: an fsync took 1.5-5 ms per 75 KB PNG on the 2-core VM, 10-25 % of a PNG
    encode, a core left idle meanwhile. At most ``limit`` files wait (back-pressure when the disk is the slower); an
    error of a wait (fsync, rename) is raised by :meth:`close`."""

    def __init__(self, limit: int = 64):
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="fastaug-commit")
        self.slots = threading.BoundedSemaphore(limit)
        self.error: BaseException | None = None
        self.mode = 0o666 & ~_umask()

    def write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, self.mode)  # as open() would create it
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            Path(tmp).unlink(missing_ok=True)
            raise
        self.slots.acquire()
        self.pool.submit(self._commit, fd, tmp, path)

    def _commit(self, fd: int, tmp: str, path: Path) -> None:
        try:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException as e:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(e, OSError) and e.filename is None:  # fsync's error names no file
                e = OSError(e.errno, f"{e.strerror}: could not commit {path}", str(path))
            self.error = self.error or e
        finally:
            self.slots.release()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.error is not None:
            raise self.error


@functools.cache
def _umask() -> int:
    """The process's umask, read once (reading it sets it: never from two threads at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _Files:
    """png / jpeg / webp: each output its own file, encoded and written by the encode threads (made durable and
    renamed into place by a :class:`_Committer`)."""

    raw = False  # outputs go through sink.encode on the encode threads

    def __init__(self, job: Job, start: int, end: int):
        self.job, self.out = job, Path(job.out)
        ext, n = job.options.extension, len(job.sources)
        self.paths = {k: self.out / output_name(job.sources[k % n], k, ext) for k in range(start, end)}
        self.todo = [k for k, p in self.paths.items() if not p.exists()]
        self.committer = _Committer() if self.todo else None

    def encode(self, k: int, image: np.ndarray) -> None:
        o = self.job.options
        self.committer.write(self.paths[k], IF.encode(image, o.codec, o.png_level, o.quality))

    def name(self, k: int) -> str:
        return str(self.paths[k].relative_to(self.out))

    def accept(self, k: int, payload) -> None:
        pass

    def skip(self, k: int) -> None:
        pass

    def fail(self, k: int) -> None:
        pass

    def close(self) -> None:
        if self.committer is not None:
            self.committer.close()

    def abort(self) -> None:
        if self.committer is not None:
            self.committer.pool.shutdown(wait=True)  # the files already written are complete: they go into place


class _Shard:
    """tar / npy: one shard per range, samples appended in index order."""

    def __init__(self, job: Job, start: int, end: int):
        self.job, self.out = job, Path(job.out)
        done = SH.is_done(self.out / f"{SH.shard_stem(start, end)}.idx.json")  # skipped outputs listed: written again
        self.todo = [] if done else list(range(start, end))
        self.writer = None if done else SH.ShardWriter(self.out, start, end, job.options.format, job.options.extension)
        self.raw = job.options.codec is None  # npy: the pixels themselves, no encoding

    def encode(self, k: int, image: np.ndarray):
        o = self.job.options
        return image if o.codec is None else IF.encode(image, o.codec, o.png_level, o.quality)

    def name(self, k: int) -> str:
        return f"{self.writer.path.name}:{k:07d}{self.job.options.extension}"

    def accept(self, k: int, payload) -> None:
        self.writer.add(self.job.meta(k), payload)

    def accept_block(self, ks: list[int], block: np.ndarray) -> None:
        """npy: the outputs ``ks`` (this shard's next ones, in order), ``block`` their pixels [len(ks),H,W,C], one write."""
        self.writer.add_block([self.job.meta(k) for k in ks], block)

    def skip(self, k: int) -> None:
        self.writer.skip(k)

    def fail(self, k: int) -> None:
        self.writer.fail(k)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


class _SourceCache:
    """Decoded sources kept across the ranges a process runs: (run id, decode options, source index) -> (color, alpha),
    least recently used dropped beyond ``limit`` bytes, one run's images at a time (a process running another run's
    range forgets the earlier run's). Thread-safe (the decode threads add to it)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.size = 0
        self.items: OrderedDict[tuple, tuple] = OrderedDict()

    def get(self, key: tuple):
        with self.lock:
            planes = self.items.get(key)
            if planes is not None:
                self.items.move_to_end(key)
            return planes

    def put(self, key: tuple, planes: tuple, limit: int) -> None:
        n = sum(a.nbytes for a in planes if a is not None)
        with self.lock:
            if key in self.items:
                return
            if self.items and next(iter(self.items))[0] != key[0]:  # another run's images: one run's at a time
                self.items.clear()
                self.size = 0
            self.items[key] = planes
            self.size += n
            while self.size > limit:
                _, old = self.items.popitem(last=False)
                self.size -= sum(a.nbytes for a in old if a is not None)

    def drop(self, run: str) -> None:
        with self.lock:
            if self.items and next(iter(self.items))[0] == run:
                self.items.clear()
                self.size = 0


_SOURCES = _SourceCache()


class _Ready:
    """A finished future's face for a value at hand."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def done(self) -> bool:
        return True

    def result(self):
        return self.value


class _Decoder:
    """Source images decoded by a thread pool: the process's :class:`_SourceCache` first (a job with a run id), else a
    decode (its future kept while recently used, so a source is read once while its outputs are near; failures are not
    cached)."""

    def __init__(self, job: Job, pool: ThreadPoolExecutor, entries: int):
        self.job, self.pool, self.entries = job, pool, entries
        self.cache: OrderedDict[int, object] = OrderedDict()
        self.shared = job.run and job.cache_bytes > 0
        self.submitted: deque = deque()  # decode futures, in the order submitted (the pool runs them in this order)

    def decoding(self) -> int:
        """Decodes submitted and not finished (running or queued)."""
        while self.submitted and self.submitted[0].done():
            self.submitted.popleft()
        return len(self.submitted)

    def _decode(self, i: int):
        color, alpha = self.job.sources[i].planes(self.job.options.decode)
        planes = (_planar(color), alpha)  # CxHxW: the engine's fast layout, transposed once per source (cached)
        if self.shared:
            _SOURCES.put((self.job.run, self.job.options.decode, i), planes, self.job.cache_bytes)
        return planes

    def get(self, k: int):
        i = k % len(self.job.sources)
        f = self.cache.get(i)
        if f is None:
            planes = _SOURCES.get((self.job.run, self.job.options.decode, i)) if self.shared else None
            if planes is not None:
                f = _Ready(planes)
            else:
                f = self.pool.submit(self._decode, i)
                self.submitted.append(f)
            self.cache[i] = f
            while len(self.cache) > self.entries:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(i)
        return f


def _as_compose(policy: torch.nn.Module):
    """A policy as a Compose (masks ride along): a bare transform or policy the way its own forward wraps it."""
    import fastaug

    if isinstance(policy, fastaug.Compose):
        return policy
    return fastaug.Compose([policy], seed=getattr(policy, "seed", 0))


@functools.cache
def _layout_kernels():
    """(planar, interleave): numba loops that move uint8 pixels between HxWxC and CxHxW one row at a time (3 channels
    unrolled), ~10x faster than torch's or numpy's generic transposing copy on one thread; nogil, so the engine threads
    run them side by side."""
    from numba import njit

    @njit(cache=True, nogil=True)
    def planar(src, dst):  # src HxWxC -> dst CxHxW
        h, w, c = src.shape
        for y in range(h):
            s = src[y]
            if c == 3:
                r, g, b = dst[0, y], dst[1, y], dst[2, y]
                for x in range(w):
                    r[x], g[x], b[x] = s[x, 0], s[x, 1], s[x, 2]
            else:
                for ch in range(c):
                    d = dst[ch, y]
                    for x in range(w):
                        d[x] = s[x, ch]

    @njit(cache=True, nogil=True)
    def interleave(src, alpha, dst):  # src BxCxHxW (+ alpha BxHxW when dst has C + 1 channels) -> dst BxHxWx(C [+ 1])
        n, c, h, w = src.shape
        extra = dst.shape[3] > c
        if c == 3 and not extra:  # RGB: each image as flat planes, one loop over its pixels (2x the per-row loop below)
            hw = h * w
            s3 = src.reshape(n, 3, hw)
            d3 = dst.reshape(n, 3 * hw)
            for i in range(n):
                r, g, b, d = s3[i, 0], s3[i, 1], s3[i, 2], d3[i]
                for p in range(hw):
                    d[3 * p] = r[p]
                    d[3 * p + 1] = g[p]
                    d[3 * p + 2] = b[p]
            return
        for i in range(n):
            for y in range(h):
                d = dst[i, y]
                if c == 3 and not extra:
                    r, g, b = src[i, 0, y], src[i, 1, y], src[i, 2, y]
                    for x in range(w):
                        d[x, 0], d[x, 1], d[x, 2] = r[x], g[x], b[x]
                else:
                    for ch in range(c):
                        s = src[i, ch, y]
                        for x in range(w):
                            d[x, ch] = s[x]
                    if extra:
                        a = alpha[i, y]
                        for x in range(w):
                            d[x, c] = a[x]

    return planar, interleave


def _planar(color: np.ndarray) -> np.ndarray:
    """HxWxC uint8 -> CxHxW (contiguous)."""
    if color.shape[2] == 1:
        return color.reshape(1, *color.shape[:2])  # the same memory
    out = np.empty((color.shape[2], *color.shape[:2]), np.uint8)
    _layout_kernels()[0](color, out)
    return out


def _augment(job: Job, items: list[tuple[int, np.ndarray, np.ndarray | None]]) -> np.ndarray:
    """[B,H,W,C] uint8 outputs of one batch of same-shape sources, decoded CxHxW (alpha, if kept, moved as a mask and
    appended). The engine gets a contiguous [B,C,H,W] batch: its kernels ran 1.6x slower on channels-last views (strided
    channel access; measured 2026-12-02 on one thread, RandAugment(2, 9) at 224x224: 590 vs 970 img/s), more than the
    two copies cost (the sources are transposed once at decode; the outputs back to HxWxC by :func:`_layout_kernels`)."""
    x = torch.from_numpy(np.stack([c for _, c, _ in items]))
    idx = torch.tensor([k for k, _, _ in items], dtype=torch.int64)
    alpha = None
    if items[0][2] is not None:
        out = _as_compose(job.policy)(x, mask=torch.from_numpy(np.stack([a for _, _, a in items])), indices=idx, epoch=0,
                                      backend=job.backend)  # fmt: skip
        y, alpha = out["image"], out["mask"]
    else:
        y = job.policy(x, indices=idx, epoch=0, backend=job.backend)
    if not isinstance(y, torch.Tensor) or y.dtype != torch.uint8:
        got = y.dtype if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"the policy must return uint8 images to be written, got {got} (drop Normalize / ToDtype)")
    n, c, h, w = y.shape
    if alpha is None and c == 1:
        return y.reshape(n, h, w, 1).numpy() if y.is_contiguous() else y.permute(0, 2, 3, 1).contiguous().numpy()
    a = alpha.to(torch.uint8).reshape(n, h, w).numpy() if alpha is not None else np.empty((n, h, w), np.uint8)
    out = np.empty((n, h, w, c + (alpha is not None)), np.uint8)
    _layout_kernels()[1](y.contiguous().numpy(), np.ascontiguousarray(a), out)
    return out


class _Range:
    """One range of outputs in the pipeline: its sink (files or a shard), its result, the outputs not yet settled."""

    __slots__ = ("unit", "sink", "result", "on_written", "pending")

    def __init__(self, job: Job, unit: tuple[int, int], on_written):
        self.unit, self.on_written = unit, on_written
        self.sink = (_Shard if job.options.sharded else _Files)(job, *unit)
        self.result = {"written": 0, "skipped": 0, "unreadable": {}, "failed": 0, "failures": {}}
        self.pending = len(self.sink.todo)  # outputs to write, skip or fail: the range is done at 0


def run_units(job: Job, units: list[tuple[int, int]], reporter=None, on_done=None, expected: int | None = None) -> None:
    """Write the outputs of ``units`` (ranges ``(start, end)``) not yet done, in order, through one pipeline: the engine
    goes on with the next range's images while a range's last outputs are encoded and its shard closed (no idle cores
    at a range's end). ``reporter(start)``: the range's ``on_written`` callback (or None); ``on_done(unit, result)``
    once a range is finished (its files in place, its shard and index written), ``result`` as :func:`run_unit`'s.
    ``expected``: about how many outputs are still to write (default: all of the ranges'), to even out the batches."""
    opened: list[_Range] = []

    def ranges():
        for unit in units:
            rng = _Range(job, unit, reporter(unit[0]) if reporter else None)
            if not rng.pending:
                if on_done:
                    on_done(unit, rng.result)
                continue
            opened.append(rng)
            yield rng

    def finish(rng: _Range) -> None:
        opened.remove(rng)
        rng.sink.close()  # a shard that fails to close removes its temporary itself
        if on_done:
            on_done(rng.unit, rng.result)

    try:
        _pipeline(job, ranges(), finish, sum(b - a for a, b in units) if expected is None else expected)
    except BaseException:
        for rng in opened:
            rng.sink.abort()
        raise


def run_unit(job: Job, start: int, end: int, on_written=None) -> dict:
    """Write the outputs ``start <= k < end`` not yet done; returns ``{"written", "skipped", "unreadable", "failed",
    "failures"}`` (see :class:`Summary`)."""
    done: list[dict] = []
    run_units(job, [(start, end)], lambda _: on_written, lambda unit, result: done.append(result))
    return done[0]


class _Failed:
    """An output's encoding or write failed (the encode thread's result instead of a payload)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception):
        self.error = error


def _pipeline(job: Job, ranges, finish, expected: int | None = None) -> None:
    threads = torch.get_num_threads()
    if job.engine_threads > 1:
        torch.set_num_threads(1)  # batches run side by side, one thread each (see Job.engine_threads)
    try:
        _stages(job, ranges, finish, expected)
    finally:
        torch.set_num_threads(threads)


BATCH_BYTES = 64 << 20  # a batch runs when it holds --batch images or this many bytes of pixels (large photos)
STALL_SECONDS = 0.05  # a decode keeping an engine thread idle this long: the waiting images run (see feed_idle)


def _batch_size(batch: int, expected: int | None, threads: int) -> int:
    """The engine's batch for ``expected`` outputs: at most ``batch``, the batches evened out and their number a multiple
    of the engine threads, so the threads finish together (2,000 outputs at 128 on 2 threads: 16 batches of 125, where
    15 of 128 and one of 80 left a core idle for most of a batch at the end)."""
    if not expected or expected <= 0 or threads < 1:
        return batch
    n = -(-expected // batch)
    n = -(-n // threads) * threads
    return max(1, -(-expected // n))


def _stages(job: Job, ranges, finish, expected: int | None = None) -> None:
    """The pipeline over the outputs of ``ranges`` (:class:`_Range` s, in order); ``finish(range)`` once all its outputs
    are settled. Batches may hold the images of two ranges (outputs depend on ``k`` only). ``expected``: about how many
    outputs the ranges hold (None: unknown), to even out the batches (:func:`_batch_size`)."""
    batch = _batch_size(job.batch, expected, job.engine_threads)
    raw = job.options.codec is None  # npy: the pixels themselves go to the shard
    lookahead, max_waiting, small = 2 * batch, 2 * batch, max(1, batch // 8)
    max_encoding = (job.engine_threads + 1) * batch + 4 * job.encode_threads
    with (
        ThreadPoolExecutor(job.decode_threads, thread_name_prefix="fastaug-decode") as dpool,
        ThreadPoolExecutor(job.encode_threads, thread_name_prefix="fastaug-encode") as epool,
        ThreadPoolExecutor(job.engine_threads, thread_name_prefix="fastaug-engine") as xpool,
    ):
        decoder = _Decoder(job, dpool, entries=max(lookahead, 16))
        seen = [0, 0]  # decoded images taken so far, their bytes: the read-ahead holds about 2 * BATCH_BYTES of them
        ahead: deque = deque()  # (k, decode future) in k order
        todo = ((rng, k) for rng in ranges for k in rng.sink.todo)
        range_of: dict[int, _Range] = {}  # k -> its range, from read-ahead until settled
        buckets: dict[tuple, list] = {}  # (shape, alpha?) -> [(k, color, alpha)]
        bucket_of: dict[int, tuple] = {}
        order: deque = deque()  # ks in k order, not yet accepted (skipped ones are settled at once)
        encoding: dict[int, tuple] = {}  # k -> (its batch's future, its place in the batch)
        running: list = []  # futures of the batches on the engine threads

        def read_ahead():
            limit = lookahead if not seen[1] else min(lookahead, max(2 * job.decode_threads, 2 * BATCH_BYTES * seen[0] // seen[1]))
            decoder.entries = max(limit, 16)  # the decoded images it keeps: as many as the read-ahead
            while len(ahead) < limit:
                item = next(todo, None)
                if item is None:
                    return
                range_of[item[1]] = item[0]
                ahead.append((item[1], decoder.get(item[1])))

        def settled(rng: _Range, n: int = 1) -> None:
            if rng.on_written:
                rng.on_written(n)
            rng.pending -= n
            if not rng.pending:
                finish(rng)

        def encode(sink, k: int, img: np.ndarray):  # on an encode thread: the payload, or _Failed (see the module docstring)
            try:
                return sink.encode(k, img)
            except Exception as e:
                if isinstance(e, OSError) and e.errno in _STOPPING_ERRNOS:
                    raise
                return _Failed(e)

        def augment(items, sinks):  # on an engine thread: the outputs [n,H,W,C] (raw), else their encodings' futures
            y = _augment(job, items)
            if raw:
                return y
            return [epool.submit(encode, sink, k, img) for (k, _, _), img, sink in zip(items, y, sinks)]

        def submit(items):
            f = xpool.submit(augment, items, None if raw else [range_of[k].sink for k, _, _ in items])
            running[:] = [*(r for r in running if not r.done()), f]  # finished batches let go (their outputs too)
            for i, (k, _, _) in enumerate(items):
                encoding[k] = (f, i)

        def run(key, parts: int = 1):
            items = buckets.pop(key)
            for k, _, _ in items:
                del bucket_of[k]
            n = len(items)
            for j in range(parts):  # near-equal parts, in k order
                submit(items[j * n // parts : (j + 1) * n // parts])

        def feed_idle(stalled: bool = False) -> bool:
            """While the next source is still decoding and a core is idle (the engine threads and the decodes under way
            fewer than the cores; or ``stalled``: the decode has kept an engine thread waiting for STALL_SECONDS, e.g. a
            slow disk), an idle engine thread takes the oldest waiting images (at least batch / 8 of them): the first
            sources of a run (or sources that do not fit the cache) do not leave a core idle. While the decodes keep the
            cores busy a small batch would only cost its call's overhead (a 16-image call took 2.3x the CPU per image of a
            128-image one). Returns whether an engine thread is idle."""
            busy = sum(not f.done() for f in running)
            if busy >= job.engine_threads or not bucket_of:
                return busy < job.engine_threads
            if stalled or busy + min(decoder.decoding(), job.decode_threads) < job.engine_threads:
                key = bucket_of[min(bucket_of)]
                if len(buckets[key]) >= small:
                    run(key)
            return True

        def drain(limit: int):
            """Accept finished outputs in k order; block until at most ``limit`` are encoding or waiting."""
            while order:
                k = order[0]
                entry = encoding.get(k)
                if entry is None:
                    if len(encoding) + len(bucket_of) <= limit:
                        return
                    run(bucket_of[k])
                    entry = encoding[k]
                f, i = entry
                if len(encoding) + len(bucket_of) <= limit and not (f.done() and (raw or f.result()[i].done())):
                    return
                out = f.result()  # the engine's error, if any, is raised here
                rng = range_of[k]
                if raw:  # the outputs next in order from this batch (its consecutive places) and range: one block
                    ks = [order.popleft()]
                    del encoding[k], range_of[k]
                    j = i + 1
                    while order:
                        k2 = order[0]
                        if encoding.get(k2) != (f, j) or range_of[k2] is not rng:
                            break
                        ks.append(order.popleft())
                        del encoding[k2], range_of[k2]
                        j += 1
                    rng.sink.accept_block(ks, out[i:j])
                    rng.result["written"] += j - i
                    settled(rng, j - i)
                    continue
                payload = out[i].result()
                del encoding[k], range_of[k]
                order.popleft()
                if isinstance(payload, _Failed):
                    reason = f"{type(payload.error).__name__}: {payload.error}"  # a bare KeyError('webp') says little
                    if job.strict:
                        raise FailedOutput(f"could not write {rng.sink.name(k)}: {reason}") from payload.error
                    rng.sink.fail(k)
                    rng.result["failed"] += 1
                    rng.result["failures"][rng.sink.name(k)] = reason
                else:
                    rng.sink.accept(k, payload)
                    rng.result["written"] += 1
                settled(rng)

        read_ahead()
        while ahead:
            k, f = ahead.popleft()
            read_ahead()
            if not f.done() and feed_idle() and bucket_of and not futures_wait([f], STALL_SECONDS).done:
                feed_idle(stalled=True)
            try:
                color, alpha = f.result()
            except IF.UnreadableImage as e:
                if job.strict:
                    raise
                rng = range_of.pop(k)
                rng.result["skipped"] += 1
                rng.result["unreadable"][e.path] = e.reason
                rng.sink.skip(k)
                settled(rng)
                continue
            size = color.nbytes + (alpha.nbytes if alpha is not None else 0)
            seen[0] += 1
            seen[1] += size
            key = (color.shape, alpha is not None)
            buckets.setdefault(key, []).append((k, color, alpha))
            bucket_of[k] = key
            order.append(k)
            if len(buckets[key]) >= batch or len(buckets[key]) * size >= BATCH_BYTES:  # full, or large photos
                run(key)
            elif len(bucket_of) > max_waiting:  # run the batch holding the oldest waiting image
                run(bucket_of[min(bucket_of)])
            drain(max_encoding)
        for key in sorted(buckets, key=lambda key: buckets[key][0][0]):  # the last images: split over the engine threads
            run(key, max(1, min(job.engine_threads, len(buckets[key]) // (2 * small))))
        drain(0)


# -- workers -------------------------------------------------------------------------------------------------------


def _set_threads(job: Job) -> None:
    if job.torch_threads:
        torch.set_num_threads(job.torch_threads)
        try:
            import numba

            numba.set_num_threads(min(job.torch_threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:  # pragma: no cover
            pass


class _Reporter:
    """A worker's ``on_written``: sends ``(range start, outputs done in it)`` to the driver at most 5 times a second
    (counts are cumulative: a late or lost message only delays the bar)."""

    def __init__(self, send, start: int):
        self.send, self.start, self.n, self.last = send, start, 0, 0.0

    def __call__(self, n: int) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= 0.2:
            self.last = now
            try:
                self.send((self.start, self.n))
            except Exception:  # progress is best effort: never fail a range for it
                pass


_JOB: list = []  # [job, progress queue] in a local worker process


def _init_worker(job: Job, progress) -> None:
    _JOB[:] = [job, progress]
    _set_threads(job)


def _worker_unit(unit: tuple[int, int]) -> dict:
    job, progress = _JOB
    return run_unit(job, *unit, _Reporter(progress.put, unit[0]))


class _Tally:
    """A Ray actor the tasks report their progress to (``(range start, done)``); the driver polls it."""

    def __init__(self):
        self.done: dict[int, int] = {}

    def put(self, item: tuple[int, int]) -> None:
        start, n = item
        self.done[start] = max(self.done.get(start, 0), n)

    def get(self) -> dict[int, int]:
        return self.done


def _ray_unit(job: Job, unit: tuple[int, int], tally) -> dict:
    _set_threads(job)
    try:
        return run_unit(job, *unit, _Reporter(lambda item: tally.put.remote(item), unit[0]))
    finally:  # Ray keeps its worker processes: decoded sources must not outlive the task (up to cache_mb per process)
        _SOURCES.drop(job.run)


def _record_backend(path: Path, backend: str) -> None:
    """A run written before the backend was recorded (2026-12-02) resumes on this one (the backends give the same
    bytes where their tests say so), with a warning; its settings then record it."""
    if path.exists():
        old = json.loads(path.read_text())
        if "backend" not in old:
            warnings.warn(f"{path} does not record the backend of its run: resuming with {backend!r}", stacklevel=3)
            write_text(path, json.dumps({**old, "backend": backend}, indent=1) + "\n")


def _run_local(job: Job, units, workers: int, report):
    """Yield ``(unit, result)`` as local worker processes finish ranges; ``report(start, done)`` while they run."""
    import multiprocessing
    import queue
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = multiprocessing.get_context("spawn")
    progress = ctx.Queue()
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(job, progress)) as pool:
        pending = {pool.submit(_worker_unit, u): u for u in units}
        try:
            while pending:
                done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                while True:
                    try:
                        report(*progress.get_nowait())
                    except queue.Empty:
                        break
                for f in done:
                    yield pending.pop(f), f.result()
        except BaseException:
            for f in pending:
                f.cancel()
            raise
        finally:
            progress.close()
            progress.cancel_join_thread()


def _run_ray(job: Job, units, address: str, workers: int, report):
    """Yield ``(unit, result)`` as Ray tasks finish ranges; ``report(start, done)`` while they run."""
    try:
        import ray
    except ImportError as e:
        raise ValueError("--ray-address needs Ray: pip install 'fastaug[distributed]'") from e
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    task = ray.remote(num_cpus=1)(_ray_unit)
    tally = ray.remote(num_cpus=0)(_Tally).remote()
    ref = ray.put(job)
    refs = {task.remote(ref, u, tally): u for u in units}
    try:
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1, timeout=0.2)
            for start, n in ray.get(tally.get.remote()).items():
                report(start, n)
            for r in done:
                yield refs.pop(r), ray.get(r)
    finally:
        ray.kill(tally)


# -- the run -------------------------------------------------------------------------------------------------------

_NAME = re.compile(r"_(\d{7,})\.[a-z]+$")


def _beyond(job: Job) -> list[Path]:
    """Output files of an earlier run with a larger count (index >= count)."""
    out = Path(job.out)
    if job.options.sharded:
        found = []
        for p in out.glob("shard-*"):
            r = SH.parse_stem(p.name)
            if r is not None and r[1] > job.count:
                found.append(p)
        return sorted(found)
    found = []
    for label in job.labels:
        for p in (out / label).glob(f"*{job.options.extension}"):
            m = _NAME.search(p.name)
            if m and int(m.group(1)) >= job.count:
                found.append(p)
    return sorted(found)


def _prepare(job: Job, trim: bool) -> None:
    out = Path(job.out)
    for label in job.labels:
        if not job.options.sharded:
            (out / label).mkdir(parents=True, exist_ok=True)
        remove_temporaries(out / label)
    remove_temporaries(out)
    extra = _beyond(job)
    if extra and not trim:
        raise ValueError(f"{out} holds {len(extra)} files of a run with a larger --count than {job.count}; pass --trim to delete "
                         "them (and their rows in labels.csv), or a --count at least as large")  # fmt: skip
    for p in extra:
        p.unlink()
    if job.options.sharded:  # a shorter last shard of an earlier, smaller count: its range grew
        expected = {SH.shard_stem(a, b) for a, b in job.units()}
        for p in out.glob("shard-*"):
            if SH.parse_stem(p.name) is not None and p.name.split(".")[0] not in expected:
                p.unlink()


def _existing(job: Job) -> int:
    out = Path(job.out)
    if job.options.sharded:
        return sum(len(SH.read_index(out / f"{SH.shard_stem(a, b)}.idx.json")["samples"]) for a, b in job.units()
                   if SH.is_done(out / f"{SH.shard_stem(a, b)}.idx.json"))  # fmt: skip  (one listing skips: redone)
    n, ext = len(job.sources), job.options.extension
    return sum((out / output_name(job.sources[k % n], k, ext)).exists() for k in range(job.count))


def _write_manifest(job: Job) -> None:
    out, n = Path(job.out), len(job.sources)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "label", "source", "index"])
    if job.options.sharded:
        for a, b in job.units():
            idx = out / f"{SH.shard_stem(a, b)}.idx.json"
            if idx.exists():
                doc = SH.read_index(idx)
                for s in doc["samples"]:
                    writer.writerow([doc["shard"], s["label"], s["source"], s["index"]])
    else:
        ext = job.options.extension
        for k in range(job.count):
            s = job.sources[k % n]
            name = output_name(s, k, ext)
            if (out / name).exists():
                writer.writerow([name, s.label, s.name, k])
    write_text(out / MANIFEST, buf.getvalue())


def synthesize(
    sources: list[Source],
    out: str | os.PathLike,
    count: int,
    policy: torch.nn.Module,
    settings: dict | None = None,
    batch: int = 128,
    backend: str = "auto",
    progress: bool = True,
    *,
    options: Options | None = None,
    strict: bool = False,
    trim: bool = False,
    workers: int = 1,
    ray_address: str | None = None,
    threads: int | None = None,
    cache_mb: int = 512,
) -> Summary:
    """Write ``count`` augmented images to ``out`` (skipping those already there); see the module docstring.

    ``settings``: what the caller wants compared on a rerun (input, policy, seed); the sources and the output options
    are added. ``workers`` > 1: local processes; ``ray_address``: Ray tasks on that cluster ("local": start one here).
    ``threads``: decode and encode threads per worker (default: the cores per worker). ``cache_mb``: decoded sources kept
    in memory per worker process across its shards (0: none; a Ray task drops them when it ends). With
    ``workers`` == 1 and several cores, torch's thread count is 1 during the run (batches run side by side, one
    thread each) and restored after: other threads of the calling process see that setting meanwhile."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"--count must be a non-negative integer, got {count!r}")
    if batch < 1:
        raise ValueError(f"--batch must be positive, got {batch}")
    if workers < 1:
        raise ValueError(f"--workers must be positive, got {workers}")
    if isinstance(cache_mb, bool) or not isinstance(cache_mb, int) or cache_mb < 0:
        raise ValueError(f"--cache-mb must be a non-negative integer, got {cache_mb!r}")
    if not sources:
        raise ValueError("no sources")
    options = options or Options()
    from fastaug.engine import resolve_backend

    backend = resolve_backend(backend, torch.device("cpu"))  # synthesis runs on CPU tensors; every worker uses this one
    out = Path(out)
    cores = os.cpu_count() or 1
    per = max(1, cores // workers) if ray_address is None else 1
    parallel = workers > 1 or ray_address is not None
    job = Job(list(sources), str(out), count, policy, options, batch, backend, strict,
              decode_threads=threads or per, encode_threads=threads or per, torch_threads=per if parallel else None, engine_threads=per,
              cache_bytes=cache_mb << 20, run=uuid.uuid4().hex)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    full = {**(settings or {}), "sources": len(sources), "files": sources_fingerprint(sources), **options.settings(),
            "backend": backend}  # fmt: skip
    _record_backend(out / SETTINGS, backend)
    check_settings(out / SETTINGS, full, f"{out} holds a run")
    _prepare(job, trim)
    summary = Summary(out, count, existing=_existing(job), backend=job.backend)
    bar = Progress(count, start=summary.existing) if progress else None
    units = job.units()
    finished: set[int] = set()  # ranges done (their start)
    running: dict[int, int] = {}  # range start -> outputs done in it so far (workers report them)
    base = summary.existing
    warned: set[str] = set()

    sizes = {a: b - a for a, b in units}

    def redraw() -> None:
        if bar:
            note = f"shards {len(finished)}/{len(units)}" if len(units) > 1 else ""
            if len(units) > 1 and running:  # the shards in progress, oldest first (at most 4 shown)
                shown = [f"{100 * running[a] // sizes[a]}%" for a in sorted(running)[:4]]
                note += f", running {' '.join(shown)}{' ...' if len(running) > 4 else ''}"
            bar.update(base + sum(running.values()), note)

    def report(start: int, n: int) -> None:
        if start not in finished:
            running[start] = max(running.get(start, 0), n)
            redraw()

    def collect(unit, r: dict) -> None:
        nonlocal base
        summary.written += r["written"]
        summary.skipped += r["skipped"]
        for path, reason in r["unreadable"].items():
            summary.unreadable[path] = reason
            if path not in warned:
                warned.add(path)
                warnings.warn(f"skipped {path}: {reason}", SkippedImageWarning, stacklevel=3)
        summary.failed += r["failed"]
        for name, reason in r["failures"].items():
            summary.failures[name] = reason
            if len(summary.failures) <= WARN_FAILED:
                warnings.warn(f"could not write {name}: {reason}", FailedOutputWarning, stacklevel=3)
        finished.add(unit[0])
        running.pop(unit[0], None)
        base += r["written"] + r["skipped"] + r["failed"]
        redraw()

    t0 = time.perf_counter()
    if ray_address is not None:
        for unit, r in _run_ray(job, units, ray_address, workers, report):
            collect(unit, r)
    elif workers > 1:
        for unit, r in _run_local(job, units, workers, report):
            collect(unit, r)
    else:
        try:
            run_units(job, units, lambda a: _Reporter(lambda item: report(*item), a), collect, expected=count - summary.existing)
        finally:
            _SOURCES.drop(job.run)
    summary.seconds = time.perf_counter() - t0
    if bar:
        bar.finish(base)
    if len(summary.failures) > WARN_FAILED:
        warnings.warn(f"{len(summary.failures) - WARN_FAILED} more outputs could not be written (Summary.failures lists them all)",
                      FailedOutputWarning, stacklevel=2)  # fmt: skip
    _write_manifest(job)
    return summary
