"""The Triton composition of geometric maps (``kernels/triton/geometry.py``, the CUDA path of ``compiler._compose_maps``)
against the torch composition, under the interpreter: affine / rotate rows built in the kernel, ready matrices
(flip, crop, perspective), applied masks, more samples than one program holds."""

from __future__ import annotations

import pytest
import torch
from interpreted_triton import interpret  # noqa: F401  (first: Triton imported for the interpreter)

# isort: split
from fastaug.kernels.triton import geometry

from fastaug import compiler
from fastaug.ops import geometry as G
from fastaug.ops.calls import GeometricCall

B, H, W = geometry.BLOCK + 5, 31, 46  # two programs, the second mostly masked


def _calls(dtype: torch.dtype, seed: int) -> list[GeometricCall]:
    g = torch.Generator().manual_seed(seed)

    def u(*shape, lo=-1.0, hi=1.0):
        return (lo + (hi - lo) * torch.rand(*shape, generator=g, dtype=torch.float64)).to(dtype)

    coin = torch.rand(B, generator=g) < 0.6
    perspective = torch.eye(3, dtype=torch.float64).expand(B, 3, 3) + 0.05 * torch.randn(B, 3, 3, generator=g, dtype=torch.float64)
    return [
        GeometricCall(name="affine", affine=G.AffineArgs(u(B, lo=-40, hi=40), u(B, 2, lo=-9, hi=9), u(B, lo=0.6, hi=1.5),
                                                         u(B, 2, lo=-25, hi=25), (H, W))),  # fmt: skip
        GeometricCall(name="flip", matrix=G.flip_matrix(B, (H, W), True, "cpu"), applied=coin),
        GeometricCall(name="rotate", affine=G.AffineArgs(u(B, lo=-90, hi=90), None, None, None, (H, W), u(B, 2, lo=0, hi=30),
                                                         rotate=True), applied=~coin),  # fmt: skip
        GeometricCall(name="crop", matrix=G.crop_matrix(u(B, lo=0, hi=5).round().double(), u(B, lo=0, hi=5).round().double())),
        GeometricCall(name="perspective", matrix=perspective),
        GeometricCall(name="affine", affine=G.AffineArgs(u(B), u(B, 2), u(B, lo=0.9, hi=1.1), u(B, 2, lo=-5, hi=5), (H, W),
                                                         u(B, 2, lo=0, hi=40))),  # fmt: skip
    ]


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-11), (torch.float32, 1e-6)])
@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_composes_the_torch_maps(dtype, tol, seed):
    calls = _calls(dtype, seed)
    want64, want = compiler._compose_maps(calls, B, torch.device("cpu"), dtype)  # torch ops on the CPU
    got64, got = geometry.compose(*compiler._map_rows(calls, B, "cpu", geometry), dtype)
    assert got64.dtype == torch.float64 and got.dtype == dtype and got.shape == (B, 3, 3)
    # float32 arguments: both build each map in float32 (sin / cos may differ in the last bit), the product in float64
    torch.testing.assert_close(got64, want64, atol=tol * 50, rtol=tol)
    torch.testing.assert_close(got, want, atol=tol * 50, rtol=tol)


def test_single_ops_and_no_applied_mask():
    """One call of each kind alone (the mask argument absent): the kernel's map equals the op's own matrix."""
    calls = _calls(torch.float64, 2)
    for call in (calls[0], calls[2], calls[4]):
        call.applied = None
        got64, _ = geometry.compose(*compiler._map_rows([call], B, "cpu", geometry), torch.float32)
        torch.testing.assert_close(got64, call.pixel_map(), atol=1e-10, rtol=1e-11)


def test_outputs_are_aligned_for_any_batch():
    """The float64 and the Plan-dtype maps share one allocation, each 16-byte aligned for odd batch sizes too."""
    for b in (1, 3, 5):
        out64, out, _ = geometry.prepare_compose(torch.zeros(b, 1, 9), torch.zeros(1, dtype=torch.int32), None, torch.float32)
        assert out64.data_ptr() % 16 == 0 and out.data_ptr() % 16 == 0
