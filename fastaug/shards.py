"""Shard files for training at scale (``fastaug synth --format tar|npy``), written in sample order, deterministic bytes.

A shard holds the outputs ``start <= k < end`` (those whose source image was readable), under ``shard-<start>-<end>``:

- ``.tar``: WebDataset style, per sample ``<k>.png`` (or ``.jpg`` / ``.webp``), ``<k>.cls`` (the label's class number,
  text) and ``<k>.json`` (``{"index", "label", "class", "source"}``); entries carry no time stamps or owners, so a
  shard's bytes depend on its samples only.
- ``.npy``: one flat uint8 array, the samples' HxWxC pixels one after the other (``np.load(..., mmap_mode="r")``);
  the index says where each sample starts and its shape.

Every shard has an index ``shard-<start>-<end>.idx.json`` (``{"version", "format", "samples": [{"index", "label",
"class", "source", "offset", "shape"}], "skipped": [k, ...], "failed": [k, ...]}``; offset and shape for ``.npy``;
``skipped``: the outputs left out for an unreadable source; ``failed``: those left out because their encoding failed),
written after the shard: the index marks the shard done, unless it lists skipped or failed outputs (a rerun writes
such a shard again, to retry them). Both go through :mod:`fastaug.atomic`.
:func:`read_npy_shard` and :func:`read_tar_shard` read them back.

A ``.npy`` shard's pixels are written by a background thread (:class:`Spool`: the arrays queued as they are, no copy,
at most 256 MiB waiting) that flushes them to disk every 16 MiB, so the disk works while the caller computes and
closing the shard syncs only the last part (224x224 RGB at 1,000 img/s is 150 MB/s; a 64 MiB remainder took 60-110 ms
to sync at the end of a run, both cores idle meanwhile). ``synth`` hands it a batch's consecutive outputs as one block
(:meth:`ShardWriter.add_block`).
"""

from __future__ import annotations

import io
import json
import os
import queue
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np

from fastaug.atomic import open_atomic, write_text

SHARD_FORMATS = ("tar", "npy")
_NPY_HEADER = 128  # bytes: room for any length, a multiple of 64 as numpy wants


def shard_stem(start: int, end: int) -> str:
    return f"shard-{start:07d}-{end:07d}"


def parse_stem(name: str) -> tuple[int, int] | None:
    """``shard-0000000-0001000.idx.json`` -> (0, 1000); None for other names."""
    parts = name.split(".")[0].split("-")
    if len(parts) != 3 or parts[0] != "shard" or not (parts[1].isdigit() and parts[2].isdigit()):
        return None
    return int(parts[1]), int(parts[2])


def _npy_header(n: int) -> bytes:
    d = f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({n},), }}"
    body = d.ljust(_NPY_HEADER - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")


class Spool:
    """Writes buffers to ``f`` on a background thread, in order, ``fdatasync`` after every ``sync_bytes``; :meth:`write`
    waits while ``limit`` bytes are queued (memory stays flat). The buffers are written as they are: the caller must not
    change them afterwards. An error of the thread is raised by the next :meth:`write` or :meth:`close`."""

    def __init__(self, f, limit: int = 256 << 20, sync_bytes: int = 16 << 20):
        self.f, self.limit, self.sync_bytes = f, limit, sync_bytes
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.space = threading.Condition()
        self.waiting = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="fastaug-shard-writer", daemon=True)
        self.thread.start()

    def write(self, buf) -> None:
        view = memoryview(buf).cast("B")
        with self.space:
            while self.waiting and self.waiting + view.nbytes > self.limit and self.error is None:
                self.space.wait()
            if self.error is not None:
                raise self.error
            self.waiting += view.nbytes
        self.queue.put(view)

    def _run(self) -> None:
        unsynced = 0
        while (view := self.queue.get()) is not None:
            try:
                if self.error is None:
                    self.f.write(view)
                    unsynced += view.nbytes
                    if unsynced >= self.sync_bytes:
                        self.f.flush()
                        os.fdatasync(self.f.fileno())
                        unsynced = 0
            except BaseException as e:  # raised in the caller's thread
                self.error = e
            with self.space:
                self.waiting -= view.nbytes
                self.space.notify_all()

    def close(self) -> None:
        """Wait until everything queued is written (raises the thread's error, if any)."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


class ShardWriter:
    """Append samples in index order with :meth:`add`; :meth:`close` renames the shard into place and writes its index."""

    def __init__(self, folder, start: int, end: int, fmt: str, image_ext: str = ".png"):
        if fmt not in SHARD_FORMATS:
            raise ValueError(f"shard format must be one of {SHARD_FORMATS}, got {fmt!r}")
        self.folder, self.fmt, self.ext = Path(folder), fmt, image_ext
        self.stem = shard_stem(start, end)
        self.path = self.folder / f"{self.stem}.{fmt}"
        self.samples: list[dict] = []
        self.skipped: list[int] = []
        self.failed: list[int] = []
        self._ctx = open_atomic(self.path)
        self._f = self._ctx.__enter__()
        self._offset = 0
        if fmt == "tar":
            self._tar = tarfile.open(fileobj=self._f, mode="w", format=tarfile.USTAR_FORMAT)
        else:
            self._f.write(_npy_header(0))
            self._spool = Spool(self._f)

    def _member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
        self._tar.addfile(info, io.BytesIO(data))

    def add(self, meta: dict, payload: bytes | np.ndarray) -> None:
        """``meta``: ``{"index", "label", "class", "source"}``; ``payload``: encoded image bytes (tar) or HxWxC uint8 (npy)."""
        meta = dict(meta)
        key = f"{meta['index']:07d}"
        if self.fmt == "tar":
            self._member(key + self.ext, payload)
            self._member(key + ".cls", str(meta["class"]).encode())
            self._member(key + ".json", json.dumps(meta, sort_keys=True).encode())
        else:
            arr = np.ascontiguousarray(payload, dtype=np.uint8)
            self._spool.write(arr)
            meta["offset"], meta["shape"] = self._offset, list(arr.shape)
            self._offset += arr.nbytes
        self.samples.append(meta)

    def add_block(self, metas: list[dict], block: np.ndarray) -> None:
        """npy: the samples ``metas`` (in index order) with their pixels ``block`` [len(metas),H,W,C] uint8, one write (the
        same bytes and index as :meth:`add` one by one)."""
        if self.fmt != "npy":
            raise ValueError("add_block is for npy shards")
        block = np.ascontiguousarray(block, dtype=np.uint8)
        if len(block) != len(metas):
            raise ValueError(f"{len(metas)} samples, {len(block)} images")
        self._spool.write(block)
        shape, size = list(block.shape[1:]), block[0].nbytes if len(block) else 0
        for meta in metas:
            meta = dict(meta)
            meta["offset"], meta["shape"] = self._offset, list(shape)
            self._offset += size
            self.samples.append(meta)

    def skip(self, k: int) -> None:
        """Output ``k`` is left out (its source unreadable): listed in the index, so a rerun retries the shard."""
        self.skipped.append(k)

    def fail(self, k: int) -> None:
        """Output ``k`` is left out (its encoding failed): listed in the index, so a rerun retries the shard."""
        self.failed.append(k)

    def close(self) -> Path:
        try:
            if self.fmt == "tar":
                self._tar.close()  # writes the end-of-archive blocks (the file object stays open)
            else:
                self._spool.close()  # a write error of the background writer (ENOSPC, ...) surfaces here
                self._f.seek(0)
                self._f.write(_npy_header(self._offset))
                self._f.seek(0, io.SEEK_END)
        except BaseException:
            self.abort()  # the temporary shard is removed now, not when the generator is collected
            raise
        self._ctx.__exit__(None, None, None)
        index = {"version": 1, "format": self.fmt, "shard": self.path.name, "samples": self.samples, "skipped": self.skipped,
                 "failed": self.failed}
        write_text(self.folder / f"{self.stem}.idx.json", json.dumps(index) + "\n")
        return self.path

    def abort(self) -> None:
        if self.fmt == "npy":
            self._spool.error = self._spool.error or RuntimeError("aborted")  # the thread drops what is still queued
            self._spool.queue.put(None)
            self._spool.thread.join()
        self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)


def read_index(path) -> dict:
    """A shard's index (pass the shard or its ``.idx.json``)."""
    path = Path(path)
    stem = path.name.split(".")[0]
    return json.loads((path.parent / f"{stem}.idx.json").read_text())


def is_done(path) -> bool:
    """Whether a shard (or its index) is complete: its index exists and lists no skipped or failed outputs."""
    path = Path(path)
    idx = path.parent / f"{path.name.split('.')[0]}.idx.json"
    if not idx.exists():
        return False
    doc = json.loads(idx.read_text())
    return not doc.get("skipped") and not doc.get("failed")


def read_npy_shard(path) -> list[tuple[np.ndarray, dict]]:
    """``[(HxWxC uint8 view, sample metadata), ...]`` of a ``.npy`` shard (or its index), memory-mapped."""
    path = Path(path)
    data = np.load(path.parent / f"{path.name.split('.')[0]}.npy", mmap_mode="r")
    out = []
    for s in read_index(path)["samples"]:
        n = int(np.prod(s["shape"]))
        out.append((data[s["offset"] : s["offset"] + n].reshape(s["shape"]), s))
    return out


def read_tar_shard(path) -> list[tuple[np.ndarray, dict]]:
    """``[(HxWxC uint8, sample metadata), ...]`` of a ``.tar`` shard (or its index), decoded with Pillow."""
    from PIL import Image

    path = Path(path)
    groups: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path.parent / f"{path.name.split('.')[0]}.tar") as tar:
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            groups.setdefault(key, {})[ext] = tar.extractfile(m).read()
    out = []
    for key in sorted(groups):
        g = groups[key]
        meta = json.loads(g["json"])
        img = next(v for k, v in g.items() if k not in ("json", "cls"))
        with Image.open(io.BytesIO(img)) as im:
            a = np.asarray(im)
        out.append((a[..., None] if a.ndim == 2 else a, meta))
    return out
