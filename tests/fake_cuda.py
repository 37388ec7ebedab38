"""Fake CUDA tensors on a CPU-only torch: run the CUDA path's host side and log what it dispatches.

Under ``FakeTensorMode`` tensors carry a device and shapes but no data, so the host code of the CUDA path runs
without a GPU. :func:`fake_cuda` logs every dispatched torch op, each Triton launch (intercepted: the kernels do not
run), each host -> device copy (an op that reads a CPU tensor and makes a CUDA one) and each device -> host read
(``.item()``, ``bool()``, ``.cpu()``, ``nonzero``: they raise under fake tensors, so the call fails there).

A CPU-only torch has no CUDA device guard, and some Tensor methods open one in their C++ binding (indexing
``x[:, 0]`` / ``x[i] = v``, ``to``, ``copy_``, ``~``, ``contiguous``, ``new_tensor``): while the context is open they
are replaced by the same operations written with aten ops (indexing: basic indices as views, tensor indices with
``aten.index`` / ``index_put_``, as torch's own ``applySlicing``), and ``numpy`` of a real host tensor reads it with
the modes off (under them it reads a fake copy: uninitialised memory)."""

from __future__ import annotations

import collections
import contextlib
import operator
import traceback
from dataclasses import dataclass, field

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from fastaug import constants

aten = torch.ops.aten

# ops that only read metadata or make views: no kernel on a device
_NO_KERNEL = {"prim.device.default", "aten.sym_size.int", "aten.sym_stride.int", "aten.sym_numel.default",
              "aten.is_contiguous.default", "aten.is_contiguous.memory_format", "aten.dim.default"}  # fmt: skip
_READS_DEVICE = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.equal.default"}


@dataclass
class CudaLog:
    """What one fake-CUDA run dispatched."""

    ops: collections.Counter = field(default_factory=collections.Counter)  # every dispatched op (views included)
    kernels: collections.Counter = field(default_factory=collections.Counter)  # ops that run a kernel (no views)
    launches: list = field(default_factory=list)  # Triton kernel names, in launch order
    host_to_device: list = field(default_factory=list)  # 'op at file:line': host data copied to the device
    host_to_device_async: list = field(default_factory=list)  # the same with non_blocking=True (no wait for the device)
    device_to_host: list = field(default_factory=list)  # 'op at file:line': device data read on the host

    def reset(self) -> None:
        """Forget everything logged so far (after a warm-up call that builds the cached constants)."""
        for log in (self.ops, self.kernels, self.launches, self.host_to_device, self.host_to_device_async, self.device_to_host):
            log.clear()

    @property
    def kernel_ops(self) -> int:
        return sum(self.kernels.values())

    def summary(self) -> dict:
        return {"torch_ops": sum(self.ops.values()), "torch_kernel_ops": self.kernel_ops, "triton_launches": len(self.launches),
                "host_to_device": len(self.host_to_device), "host_to_device_async": len(self.host_to_device_async),
                "device_to_host": len(self.device_to_host)}  # fmt: skip


def _caller() -> str:
    """The innermost frame of the library (fastaug/, kernels/) on the stack, as ``file:line``."""
    for frame in reversed(traceback.extract_stack()):
        parts = frame.filename.replace("\\", "/").split("/")
        if "fastaug" in parts[-3:-1] or "kernels" in parts[-3:-1]:
            return f"{'/'.join(parts[-2:])}:{frame.lineno}"
    return "?"


def _tensors(tree):
    for a in tree:
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from _tensors(a)


class _Recorder(TorchDispatchMode):
    def __init__(self, log: CudaLog):
        super().__init__()
        self.log = log

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func)
        self.log.ops[name] += 1
        ins = list(_tensors([*args, *kwargs.values()]))
        on_cuda = any(t.device.type == "cuda" for t in ins)
        if name in _READS_DEVICE and on_cuda:
            self.log.device_to_host.append(f"{name} at {_caller()}")
        out = func(*args, **kwargs)
        outs = list(_tensors(out if isinstance(out, (list, tuple)) else [out]))
        to_cuda = any(t.device.type == "cuda" for t in outs)
        if name == "aten._to_copy.default" and to_cuda and kwargs.get("non_blocking") and ins[0].device.type == "cpu":
            self.log.host_to_device_async.append(f"{name} at {_caller()}")
        elif to_cuda and any(t.device.type == "cpu" and t.dim() > 0 for t in ins):
            self.log.host_to_device.append(f"{name} at {_caller()}")  # a CPU tensor (not a 0-dim scalar) read into a CUDA result
        elif name == "aten._to_copy.default" and to_cuda and any(t.device.type == "cpu" for t in ins):
            self.log.host_to_device.append(f"{name} at {_caller()}")  # torch.tensor(x, device="cuda"), .to("cuda") of a scalar
        elif on_cuda and outs and all(t.device.type == "cpu" for t in outs):
            self.log.device_to_host.append(f"{name} at {_caller()}")
        if name not in _NO_KERNEL and not getattr(func, "is_view", False):
            self.log.kernels[name] += 1
        return out


def _index_parts(x: torch.Tensor, index):
    """Basic indexing as views of ``x``; returns (view, tensor indices per view dim or None)."""
    if not isinstance(index, tuple):
        index = (index,)
    consumed = sum(1 if not isinstance(i, torch.Tensor) or i.dtype != torch.bool else i.dim()
                   for i in index if i is not None and i is not Ellipsis)  # fmt: skip
    if Ellipsis in [i for i in index if not isinstance(i, torch.Tensor)]:
        at = next(n for n, i in enumerate(index) if i is Ellipsis and not isinstance(i, torch.Tensor))
        index = index[:at] + (slice(None),) * (x.dim() - consumed) + index[at + 1:]
    view, dim, adv = x, 0, []
    for i in index:
        if i is None:
            view = view.unsqueeze(dim)
            adv.append(None)
            dim += 1
        elif isinstance(i, slice):
            step = 1 if i.step is None else operator.index(i.step)
            view = aten.slice.Tensor(view, dim, i.start, i.stop, step)
            adv.append(None)
            dim += 1
        elif isinstance(i, torch.Tensor):
            if i.dtype == torch.bool:
                raise RuntimeError("fake_cuda: a boolean mask index needs nonzero (a device -> host read)")
            adv.append(i)
            dim += 1
        elif isinstance(i, (list, tuple)):
            adv.append(torch.tensor(i))  # as torch: a host tensor, copied to the device by the index op
            dim += 1
        else:
            view = view.select(dim, operator.index(i))
    adv += [None] * (view.dim() - len(adv))
    return view, adv


def _getitem(self, index):
    view, adv = _index_parts(self, index)
    if all(a is None for a in adv):
        return view
    last = max(n for n, a in enumerate(adv) if a is not None)
    return aten.index.Tensor(view, adv[: last + 1])


def _setitem(self, index, value):
    view, adv = _index_parts(self, index)
    if not isinstance(value, torch.Tensor):
        value = torch.full((), value, dtype=self.dtype, device=self.device)
    if all(a is None for a in adv):
        view.copy_(value)
    else:
        last = max(n for n, a in enumerate(adv) if a is not None)
        aten.index_put_(view, adv[: last + 1], value)


def _to(self, *args, **kwargs):
    """``Tensor.to`` as ``aten._to_copy`` (the C++ method opens a CUDA device guard)."""
    device, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*args, **kwargs)
    device = self.device if device is None else torch.device(device)
    dtype = self.dtype if dtype is None else dtype
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    if device == self.device and dtype == self.dtype and not kwargs.get("copy", False):
        return self
    return aten._to_copy.default(self, dtype=dtype, device=device, non_blocking=non_blocking)


def _contiguous(self, memory_format=torch.contiguous_format):
    return self if self.is_contiguous(memory_format=memory_format) else aten.clone.default(self, memory_format=memory_format)


def _new_tensor(self, data, dtype=None, device=None, requires_grad=False):
    return torch.tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


def _numpy(self, *, force: bool = False):
    """``Tensor.numpy`` of a real host tensor with the modes off: under them its data would be read through a fake
    copy (uninitialised memory)."""
    with _disable_current_modes():
        return torch._C.TensorBase.numpy(self, force=force)


# Tensor methods whose C++ binding opens a device guard (a CUDA one fails on a CPU-only torch), as aten ops
_METHODS = {
    "__getitem__": _getitem,
    "__setitem__": _setitem,
    "to": _to,
    "cuda": lambda self, device=None, non_blocking=False: _to(self, device or "cuda", non_blocking=non_blocking),
    "copy_": lambda self, src, non_blocking=False: aten.copy_.default(self, src, non_blocking),
    "__invert__": lambda self: aten.bitwise_not.default(self),
    "contiguous": _contiguous,
    "new_tensor": _new_tensor,
    "numpy": _numpy,
}


# A side effect that outlives the harness: once ``torch.Tensor.__getitem__`` has been assigned, CPython keeps the
# class's sequence slot even after the attribute is deleted again, so in the same process ``torch.tensor`` reads a
# 0-d tensor inside a list as a sequence and fails (``torch.tensor([[t0, t1]])`` -> "len() of a 0-d tensor"). Code
# that may run after these tests in one pytest process builds such tensors with ``torch.stack``.


@contextlib.contextmanager
def fake_cuda():
    """``with fake_cuda() as log:`` create tensors with ``device="cuda"`` and run the code under test."""
    from fastaug.kernels.triton import backward as triton_backward
    from fastaug.kernels.triton import fused as triton_fused
    from fastaug.kernels.triton import geometry as triton_geometry
    from fastaug.kernels.triton import tables as triton_tables

    log = CudaLog()
    constants.clear()  # no real tensor cached before, no fake one after
    saved = {name: torch.Tensor.__dict__.get(name) for name in _METHODS}
    saved_launch = triton_fused.launch, triton_tables.launch, triton_geometry.launch, triton_backward.launch
    for name, method in _METHODS.items():
        setattr(torch.Tensor, name, method)
    def count(spec) -> None:
        log.launches.append(spec.kernel)

    triton_fused.launch = triton_tables.launch = triton_geometry.launch = triton_backward.launch = count
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), _Recorder(log):
            yield log
    finally:
        for name, method in saved.items():
            if method is None:
                delattr(torch.Tensor, name)  # back to the inherited C++ method
            else:
                setattr(torch.Tensor, name, method)
        triton_fused.launch, triton_tables.launch, triton_geometry.launch, triton_backward.launch = saved_launch
        constants.clear()
