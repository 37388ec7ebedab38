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


LAYOUT = rng.Layout(((64, 6), (65, 1), (130, 40), (2**32 + 9, 3)))


def _banked_equal_direct(seed, epoch, idx, table_fn):
    flat = table_fn(seed, epoch, idx, LAYOUT.table(idx.shape[0], idx.device))
    start = 0
    for slot, n in LAYOUT.segments:
        block = flat[start : start + idx.shape[0] * n].view(-1, n)
        assert torch.equal(block, rng.hash32_torch(seed, epoch, idx, slot, n)), (slot, n)
        start += idx.shape[0] * n


@pytest.mark.parametrize("seed, epoch", [(0, 0), (7, 3), (2**40 + 5, 2**32 - 1), (-3, 12)])
def test_bank_table_equals_single_draws(seed, epoch):
    """One table launch gives every segment the bits of its own draw: numba (CPU) and the torch form."""
    idx = torch.tensor([0, 1, 5, 2**31 - 1, 2**33 + 7, 123456789012], dtype=torch.int64)
    _banked_equal_direct(seed, epoch, idx, rng.hash32_table_torch)
    _banked_equal_direct(seed, epoch, idx, lambda s, e, i, t: rng.hash32_table(s, e, i, LAYOUT))


@pytest.mark.parametrize("device_epoch", [False, True])
def test_triton_bank_table_equals_single_draws(device_epoch, monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    from fastaug.kernels.triton import fused

    idx = torch.tensor([0, 3, 2**33 + 1], dtype=torch.int64)
    for seed, epoch in ((0, 0), (11, 2**32 - 1), (2**40 + 3, 77)):
        if device_epoch:
            fn = lambda s, e, i, t: fused.hash32_table(rng.seed_prefix(s), i, t, epoch=torch.tensor(e))  # noqa: E731
        else:
            fn = lambda s, e, i, t: fused.hash32_table(rng.prefix(s, e), i, t)  # noqa: E731
        _banked_equal_direct(seed, epoch, idx, fn)
        # the same launch writes the draws' uniforms: rng.uniform's bits
        table = LAYOUT.table(idx.shape[0], "cpu")
        hashes, uniforms = fused.hash32_table_uniforms(rng.prefix(seed, epoch), idx, table)
        assert uniforms.dtype == torch.float64 and torch.equal(uniforms, rng._to_uniform(hashes))
        assert torch.equal(hashes, fused.hash32_table(rng.prefix(seed, epoch), idx, table))


def test_bank_serves_its_draws_and_lists_the_others():
    idx = torch.arange(5)
    with rng.bank(3, 1, idx, rng.Layout(((64, 4),))) as bank:
        u = rng.uniform(3, 1, idx, 64, 4)
        assert u.is_contiguous() and torch.equal(u, rng._to_uniform(rng.hash32_torch(3, 1, idx, 64, 4)))
        assert torch.equal(rng.uniform(3, 1, idx, 64, 2), u[:, :2])  # a narrower draw: the first columns
        assert torch.equal(rng.key(3, 1, idx, 64), rng.hash32_torch(3, 1, idx, 64, 1)[:, 0])
        assert torch.equal(rng.uniform(3, 1, idx, 65, 2), rng._to_uniform(rng.hash32_torch(3, 1, idx, 65, 2)))
        rng.uniform(3, 2, idx, 64, 4)  # another epoch, seed or index tensor: not this bank's key
        rng.uniform(3, 1, idx.clone(), 64, 4)
    assert bank.missed == [(65, 2)]
    assert rng.Layout(((64, 4),)).merged(bank.missed + [(64, 2), (64, 5)]).segments == ((64, 5), (65, 2))
    assert rng._BANK.get() is None


def test_compose_banks_its_draws_with_the_same_bits():
    """The second call of a Compose draws from its bank: the same record and output as a fresh pipeline's first call."""
    import fastaug as fa

    def build():
        return fa.Compose([fa.RandomResizedCrop(24), fa.RandAugment(2, 9), fa.XYMasking(num_masks_x=2, mask_x_length=(2, 5)),
                           fa.RandomErasing(p=1.0)], seed=5)  # fmt: skip

    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    idx = torch.tensor([4, 9, 2, 7])
    aug = build()
    aug(x, indices=idx, epoch=0)
    assert aug._draw_layouts and next(iter(aug._draw_layouts.values())).columns > 40
    banked, rec = aug(x, indices=idx, epoch=3, return_record=True)
    fresh, rec0 = build()(x, indices=idx, epoch=3, return_record=True)
    assert torch.equal(banked, fresh)
    assert [rec.calls(i) for i in range(4)] == [rec0.calls(i) for i in range(4)]
