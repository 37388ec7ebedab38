"""The counter-based draws: the compiled CPU form equals the torch form and a plain-Python oracle of the formula."""

import pytest
import torch

from fastaug import rng
from fastaug.ops.counter import M1, M2, MASK


def _mix(h: int) -> int:
    h ^= h >> 16
    h = (h * M1) & MASK
    h ^= h >> 15
    h = (h * M2) & MASK
    return h ^ (h >> 16)


def _oracle(seed: int, epoch: int, index: int, slot: int, j: int) -> int:
    h = _mix((seed & MASK) ^ 0x3C6EF372)
    for v in ((seed >> 32) & MASK, epoch & MASK, index & MASK, (index >> 32) & MASK, slot & MASK):
        h = _mix(h ^ v)
    return _mix(h ^ ((j * 0x2545F491) & MASK))


@pytest.mark.parametrize("seed", [0, 7, 2**40 + 3, 2**64 - 1])
def test_cpu_draws_equal_the_torch_form_and_the_formula(seed):
    idx = torch.tensor([0, 1, 5, 2**31 + 9, 2**33 + 1, 10**12], dtype=torch.int64)
    cpu = rng.hash32(seed, 11, idx, 3, n=4)
    assert cpu.dtype == torch.int64 and cpu.shape == (6, 4)
    assert torch.equal(cpu, rng.hash32_torch(seed, 11, idx, 3, n=4))
    expected = [[_oracle(seed, 11, int(i), 3, j) for j in range(4)] for i in idx]
    assert cpu.tolist() == expected


def test_device_seed_tensors_take_the_torch_form():
    idx = torch.arange(4)
    assert torch.equal(rng.hash32(torch.tensor(5), torch.tensor(2), idx, 1, 2), rng.hash32(5, 2, idx, 1, 2))


@pytest.mark.parametrize("seed, epoch", [(0, 0), (7, 3), (2**40 + 5, 2**32 - 1), (-3, 12)])
def test_triton_draws_equal_torch_draws(seed, epoch, monkeypatch):
    """The one-launch Triton draws (CUDA's path) give the bits of the torch formula (run in the interpreter)."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from fastaug.kernels.triton import fused

    idx = torch.tensor([0, 1, 5, 2**31 - 1, 2**33 + 7, 123456789012], dtype=torch.int64)
    for slot, n in ((0, 1), (70, 8), (2**32 + 9, 3)):
        got = fused.hash32(rng.prefix(seed, epoch), idx, slot, n)
        assert torch.equal(got, rng.hash32_torch(seed, epoch, idx, slot, n)), (slot, n)


def test_triton_draws_with_a_device_epoch(monkeypatch):
    """The epoch read by the kernel (a CUDA graph's fresh draws) gives the bits of the host-epoch path."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from fastaug.kernels.triton import fused

    idx = torch.tensor([0, 3, 2**33 + 1], dtype=torch.int64)
    for seed, epoch in ((0, 0), (11, 2**32 - 1), (2**40 + 3, 77)):
        got = fused.hash32(rng.seed_prefix(seed), idx, 70, 4, epoch=torch.tensor(epoch))
        assert torch.equal(got, rng.hash32_torch(seed, epoch, idx, 70, 4))
