"""Counter-based random draws: a pure function of (seed, epoch, sample index, slot).

Integer tensor ops on the data's device (no generator state), so draws are identical on CPU and GPU,
whatever the batch composition, worker count or rank.

A caller that knows the draws a block of code will make (``Compose``: the slots and widths its transforms drew at
its previous call of the same shape) computes them all in one launch with :func:`bank`; inside the block every
:func:`hash32` / :func:`uniform` / :func:`randint` / :func:`key` of a banked (seed, epoch, indices, slot) reads its
columns from the bank (the same bits: a draw's value does not depend on how many columns are drawn with it), and the
others draw as usual and are listed in ``Bank.missed``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from fastaug.constants import cached
from fastaug.ops.counter import MASK as _MASK
from fastaug.ops.counter import mix as _mix
from fastaug.ops.counter import mix_int as _mix_int

_SEED0 = 0x3C6EF372  # xor'ed into the seed's low half before the first mix


def hash32(seed: int, epoch: int, indices: torch.Tensor, slot: int, n: int = 1) -> torch.Tensor:
    """32-bit hashes [B, n] (int64 tensor) of (seed, epoch, index, slot, j) for j < n."""
    bank = _BANK.get()
    if bank is not None and (got := bank.take(seed, epoch, indices, slot, n, False)) is not None:
        return got
    return _hash32(seed, epoch, indices, slot, n)


def _hash32(seed, epoch, indices: torch.Tensor, slot: int, n: int) -> torch.Tensor:
    idx = indices.to(torch.int64)
    if isinstance(epoch, torch.Tensor) and epoch.device.type == "cpu":
        epoch = int(epoch)  # a host value: no device involved
    if isinstance(seed, torch.Tensor):
        return hash32_torch(seed, epoch, idx, slot, n)
    device_epoch = isinstance(epoch, torch.Tensor)
    if idx.device.type == "cpu" and not device_epoch:
        from fastaug.kernels.numba import draws  # the same formula compiled: one call instead of ~60 small torch ops

        return torch.from_numpy(draws.hash32(seed, epoch, idx.numpy(), slot, n))
    if idx.device.type == "cuda" and (fused := _triton()) is not None:  # one launch instead of ~60 small torch kernels
        if not device_epoch:
            return fused.hash32(prefix(seed, epoch), idx, slot, n)
        if epoch.device == idx.device and epoch.numel() == 1:  # read on the device: a CUDA graph replays with fresh draws
            return fused.hash32(seed_prefix(seed), idx, slot, n, epoch=epoch)
    return hash32_torch(seed, epoch, idx, slot, n)


def _triton():
    """The Triton kernels' module, or None where Triton is not installed (the torch formula then draws)."""
    try:
        from fastaug.kernels.triton import fused
    except ImportError:
        return None
    return fused


def seed_prefix(seed: int) -> int:
    """The hash of the seed that :func:`prefix` continues with the epoch (python ints; as :func:`hash32_torch`)."""
    return _mix_int(_mix_int((seed & _MASK) ^ _SEED0) ^ ((seed >> 32) & _MASK))


def prefix(seed: int, epoch: int) -> int:
    """The hash of (seed, epoch) that every draw of a call starts from (python ints; as :func:`hash32_torch`)."""
    return _mix_int(seed_prefix(seed) ^ (epoch & _MASK))


def hash32_torch(seed, epoch, idx: torch.Tensor, slot: int, n: int = 1) -> torch.Tensor:
    """:func:`hash32` as torch ops on ``idx``'s device (seed and epoch may be device tensors)."""
    j = torch.arange(n, dtype=torch.int64, device=idx.device)
    h = _mix(_index_hash(seed, epoch, idx) ^ (slot & _MASK))
    return _mix(h.unsqueeze(1) ^ (j.unsqueeze(0) * 0x2545F491 & _MASK))


def _index_hash(seed, epoch, idx: torch.Tensor) -> torch.Tensor:
    """The hash of (seed, epoch, index) [B] that every slot of a sample continues."""
    h = _mix(torch.zeros_like(idx) + ((seed & _MASK) ^ _SEED0))  # a device seed tensor: no host read
    h = _mix(h ^ ((seed >> 32) & _MASK))
    h = _mix(h ^ (epoch & _MASK))
    h = _mix(h ^ (idx & _MASK))
    return _mix(h ^ ((idx >> 32) & _MASK))


def uniform(seed: int, epoch: int, indices: torch.Tensor, slot: int, n: int = 1) -> torch.Tensor:
    """Uniform draws in [0, 1) as float64 [B, n] (24-bit resolution, exact in float32)."""
    bank = _BANK.get()
    if bank is not None and (got := bank.take(seed, epoch, indices, slot, n, True)) is not None:
        return got
    return _to_uniform(_hash32(seed, epoch, indices, slot, n))


def _to_uniform(h: torch.Tensor) -> torch.Tensor:
    return (h >> 8).to(torch.float64) * (1.0 / (1 << 24))


def randint(seed: int, epoch: int, indices: torch.Tensor, slot: int, low, high, n: int = 1) -> torch.Tensor:
    """Integers in [low, high) (``low``/``high`` numbers or [B] tensors) as int64 [B, n]."""
    u = uniform(seed, epoch, indices, slot, n)
    if not isinstance(low, torch.Tensor) and not isinstance(high, torch.Tensor):  # numbers: no tensor built from host values
        lo, hi = float(low), float(high)
        if 0.0 <= lo < hi <= 2.0**28 and lo.is_integer() and hi.is_integer():
            # u has 24 bits: lo + u * (hi - lo) is >= 0 and never rounds up to hi, so the truncating cast is the floor
            # and the clamp a no-op (the same integers, 2 or 3 ops instead of 5)
            return (u * (hi - lo) if lo == 0.0 else lo + u * (hi - lo)).to(torch.int64)
        return torch.clamp(torch.floor(lo + u * (hi - lo)), max=hi - 1).to(torch.int64)
    lo = torch.as_tensor(low, dtype=torch.float64, device=u.device)
    hi = torch.as_tensor(high, dtype=torch.float64, device=u.device)
    if lo.dim() == 1:
        lo, hi = lo.unsqueeze(1), hi.unsqueeze(1)
    return torch.minimum(torch.floor(lo + u * (hi - lo)), hi - 1).to(torch.int64)


def key(seed: int, epoch: int, indices: torch.Tensor, slot: int) -> torch.Tensor:
    """Per-sample 32-bit keys [B] (int64) of a random op's per-pixel draws (see ``fastaug.ops.counter``)."""
    return hash32(seed, epoch, indices, slot, 1)[:, 0]


@dataclass(frozen=True)
class Layout:
    """The draws of a bank: ``segments`` (slot, n) with distinct slots, in order. Segment s fills the flat block
    ``[B * sum(n before s), B * sum(n up to s))`` as a row-major [B, n] (each draw a contiguous tensor)."""

    segments: tuple[tuple[int, int], ...] = ()

    @property
    def columns(self) -> int:
        return sum(n for _, n in self.segments)

    def merged(self, draws) -> Layout:
        """This layout with the (slot, n) ``draws`` added (a slot keeps its widest draw)."""
        widest = dict(self.segments)
        for slot, n in draws:
            widest[slot] = max(n, widest.get(slot, 0))
        return Layout(tuple((slot, n) for slot, n in widest.items() if n > 0))

    def table(self, b: int, device: torch.device) -> torch.Tensor:
        """int64 [4, columns] on ``device`` (cached): per column its slot, j, flat position at b = 0 and row stride."""

        def build() -> torch.Tensor:
            rows: tuple[list[int], ...] = ([], [], [], [])
            start = 0
            for slot, n in self.segments:
                for j in range(n):
                    for row, v in zip(rows, (slot & _MASK, j, start + j, n), strict=True):
                        row.append(v)
                start += b * n
            return torch.tensor(rows, dtype=torch.int64, device=device)

        return cached(("draw table", self.segments, b, torch.device(device)), build)


@dataclass
class Bank:
    """The draws of one call, computed in one launch (see the module doc); ``missed``: draws asked for but not in it."""

    seed: int | torch.Tensor
    epoch: int | torch.Tensor
    indices: torch.Tensor
    layout: Layout
    hashes: torch.Tensor | None = None  # flat int64 [B * columns]
    missed: list = field(default_factory=list)
    _uniforms: torch.Tensor | None = None
    _where: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        b, start = self.indices.shape[0], 0
        for slot, n in self.layout.segments:
            self._where[slot] = (start, n)
            start += b * n

    def take(self, seed, epoch, indices, slot: int, n: int, uniform: bool) -> torch.Tensor | None:
        """The banked draw [B, n] (hashes, or uniforms), or None (recorded in ``missed`` when the key is this bank's)."""
        if indices is not self.indices or not _same(seed, self.seed) or not _same(epoch, self.epoch):
            return None
        if n <= 0:
            return None  # nothing to draw: the plain path makes the empty tensor
        start, width = self._where.get(slot, (0, 0))
        if n > width or self.hashes is None:
            self.missed.append((slot, n))
            return None
        if uniform and self._uniforms is None:
            self._uniforms = _to_uniform(self.hashes)
        flat = self._uniforms if uniform else self.hashes
        out = flat[start : start + self.indices.shape[0] * width].view(-1, width)
        return out if n == width else out[:, :n].contiguous()


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return a is b
    return a == b


_BANK: contextvars.ContextVar[Bank | None] = contextvars.ContextVar("fastaug_rng_bank", default=None)


@contextlib.contextmanager
def bank(seed, epoch, indices: torch.Tensor, layout: Layout | None = None) -> Iterator[Bank]:
    """Draw ``layout``'s columns of (seed, epoch, ``indices``) in one launch and serve them to the draws of the block."""
    layout = layout or Layout()
    bk = Bank(seed, epoch, indices, layout)
    if layout.columns:
        bk.hashes, bk._uniforms = _hash32_table_uniforms(seed, epoch, indices, layout)
    token = _BANK.set(bk)
    try:
        yield bk
    finally:
        _BANK.reset(token)


def hash32_table(seed, epoch, indices: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The flat int64 [B * columns] of ``layout`` (see :class:`Layout`): :func:`hash32` of every segment, one launch."""
    return _hash32_table_uniforms(seed, epoch, indices, layout)[0]


def _hash32_table_uniforms(seed, epoch, indices: torch.Tensor, layout: Layout) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`hash32_table` and, where the same launch makes them (Triton), the draws' uniforms (else None)."""
    idx = indices.to(torch.int64)
    b = idx.shape[0]
    if isinstance(epoch, torch.Tensor) and epoch.device.type == "cpu":
        epoch = int(epoch)
    device_epoch = isinstance(epoch, torch.Tensor)
    if not isinstance(seed, torch.Tensor):
        if idx.device.type == "cpu" and not device_epoch:
            from fastaug.kernels.numba import draws

            return torch.from_numpy(draws.hash32_table(seed, epoch, idx.numpy(), layout.table(b, "cpu").numpy())), None
        if idx.device.type == "cuda" and (fused := _triton()) is not None:
            table = layout.table(b, idx.device)
            if not device_epoch:
                return fused.hash32_table_uniforms(prefix(seed, epoch), idx, table)
            if epoch.device == idx.device and epoch.numel() == 1:
                return fused.hash32_table_uniforms(seed_prefix(seed), idx, table, epoch=epoch)
    return hash32_table_torch(seed, epoch, idx, layout.table(b, idx.device)), None


def hash32_table_torch(seed, epoch, idx: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """:func:`hash32_table` as torch ops (``table``: :meth:`Layout.table`)."""
    h = _mix(_index_hash(seed, epoch, idx).unsqueeze(1) ^ table[0].unsqueeze(0))
    h = _mix(h ^ (table[1].unsqueeze(0) * 0x2545F491 & _MASK))
    b = idx.shape[0]
    pos = table[2].unsqueeze(0) + torch.arange(b, device=idx.device).unsqueeze(1) * table[3].unsqueeze(0)
    out = torch.empty(h.numel(), dtype=torch.int64, device=idx.device)
    out[pos.reshape(-1)] = h.reshape(-1)
    return out
