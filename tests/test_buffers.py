"""Host-side machinery of the CPU path: the buffer pool behind ``engine.empty`` and the numba backend's workers."""

import math

import numpy as np
import pytest
import torch
from fastaug.kernels.numba import backend

from fastaug import engine

SHAPE = (4, 3, 512, 512)  # 12 MiB of float32: pooled


@pytest.fixture
def pool(monkeypatch):
    p = engine.BufferPool(capacity=3)
    if not p.enabled:
        pytest.skip("this torch has no storage use count")
    monkeypatch.setattr(engine, "buffer_pool", p)
    return p


def test_a_buffer_is_reused_only_when_nothing_else_holds_it(pool):
    a = engine.empty(SHAPE, torch.float32, torch.device("cpu"))
    first = a.data_ptr()
    assert engine.empty(SHAPE, torch.float32, torch.device("cpu")).data_ptr() != first  # `a` alive
    view = a[1:3]
    del a
    assert engine.empty(SHAPE, torch.float32, torch.device("cpu")).data_ptr() != first  # a view of it alive
    del view
    b = engine.empty(SHAPE, torch.float32, torch.device("cpu"), torch.channels_last)
    assert b.data_ptr() == first and b.shape == SHAPE and b.is_contiguous(memory_format=torch.channels_last)
    c = engine.empty((4, 3, 1024, 1024), torch.uint8, torch.device("cpu"))  # same bytes, another dtype and shape
    assert c.data_ptr() != first  # b is alive
    del b
    d = engine.empty((4, 3, 1024, 1024), torch.uint8, torch.device("cpu"))
    assert d.data_ptr() == first and d.dtype == torch.uint8 and d.shape == (4, 3, 1024, 1024)


def test_shared_memory_buffers_are_never_reused(pool):
    a = engine.empty(SHAPE, torch.float32, torch.device("cpu"))
    a.share_memory_()  # what a DataLoader worker does to a batch it sends: the main process still reads it
    first = a.data_ptr()
    del a
    assert engine.empty(SHAPE, torch.float32, torch.device("cpu")).data_ptr() != first


def test_small_tensors_and_the_capacity(pool):
    small = engine.empty((2, 3, 8, 8), torch.float32, torch.device("cpu"))
    assert small.shape == (2, 3, 8, 8) and not pool._storages
    for _ in range(5):
        engine.empty(SHAPE, torch.float32, torch.device("cpu"))  # dropped at once: the same buffer each time
    assert len(pool._storages) == 1
    alive = [engine.empty(SHAPE, torch.float32, torch.device("cpu")) for _ in range(5)]
    assert len(pool._storages) == 3 and len({t.data_ptr() for t in alive}) == 5
    pool.clear()
    assert not pool._storages
    pool.max_bytes = 2 * 4 * math.prod(SHAPE)  # room for two of them
    alive = [engine.empty(SHAPE, torch.float32, torch.device("cpu")) for _ in range(3)]
    assert len(pool._storages) == 2 and pool._storages[-1].data_ptr() == alive[-1].data_ptr()


def test_worker_errors_reach_the_caller(monkeypatch):
    monkeypatch.setattr(backend, "num_threads", lambda: 2)
    seen = []

    def kernel(t0, t1, fail_at, scratch):
        seen.extend(range(t0, t1))
        if fail_at in range(t0, t1):
            raise RuntimeError("task failed")

    with pytest.raises(RuntimeError, match="task failed"):
        backend.run_chunked(kernel, 16, (5,), lambda: (np.zeros(1),))
    seen.clear()
    backend.run_chunked(kernel, 16, (-1,), lambda: (np.zeros(1),))
    assert sorted(seen) == list(range(16))  # every task once, over the caller and the workers
