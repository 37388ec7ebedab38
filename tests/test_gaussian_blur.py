"""gaussian_blur / GaussianBlur: torchvision per sample, the backends against the reference, gradients,
fused with other ops in a Compose, records, bad input. (Triton: tests/test_triton_backend.py.)"""

from __future__ import annotations

import pytest
import torch
from images import image, image_in_layout
from tv import load

import fastaug
import fastaug.functional as F
from fastaug.compiler import compile_plan

TF = load()
needs_tv = pytest.mark.skipif(TF is None, reason="torchvision not installed")



def _tv_per_sample(x: torch.Tensor, ks, sigma: torch.Tensor) -> torch.Tensor:
    return torch.stack([TF.gaussian_blur(x[i], list(ks), [float(sigma[i, 0]), float(sigma[i, 1])]) for i in range(x.shape[0])])


@needs_tv
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("shape,ks", [((3, 3, 17, 23), (3, 3)), ((2, 1, 9, 6), (5, 7)), ((2, 4, 8, 8), (1, 3)), ((3, 3, 12, 11), (9, 5))])
@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_matches_torchvision_per_sample(dtype, shape, ks, backend):
    x = image(dtype, shape, sum(shape))
    sigma = torch.rand(shape[0], 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2.5 + 0.1
    want = _tv_per_sample(x, ks, sigma)
    got = F.gaussian_blur(x, ks, sigma, backend=backend)
    assert got.dtype == x.dtype and got.shape == x.shape
    if dtype == torch.uint8:  # torchvision: one 2-D conv; fastaug: separable, so an exact .5 may round apart
        diff = (got.int() - want.int()).abs()
        assert diff.max() <= 1 and (diff == 0).float().mean() > 0.99
    else:
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@needs_tv
def test_scalar_pair_and_default_sigma():
    x = image(torch.uint8, (2, 3, 10, 13), 1)
    for sigma in (None, 1.3, [0.7, 2.0]):
        want = torch.stack([TF.gaussian_blur(x[i], [5, 3], sigma) for i in range(2)])
        assert (F.gaussian_blur(x, (5, 3), sigma).int() - want.int()).abs().max() <= 1


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_numba_equals_reference_exactly(dtype, layout):
    x = image_in_layout(dtype, (4, 3, 15, 14), 7, layout)
    sigma = torch.tensor([0.3, 0.9, 1.7, 3.0], dtype=torch.float64)  # one per sample: both axes
    want = F.gaussian_blur(x, (7, 5), sigma, backend="torch")
    got = F.gaussian_blur(x, (7, 5), sigma, backend="numba")
    assert torch.equal(got, want)
    assert got.stride() == want.stride()


def test_kernel_larger_than_image_mirrors_periodically():
    """torchvision refuses padding >= the image size; fastaug keeps mirroring (periodic reflection)."""
    x = image(torch.float32, (2, 1, 3, 2), 5)
    got = F.gaussian_blur(x, 9, 2.0, backend="numba")
    torch.testing.assert_close(got, F.gaussian_blur(x, 9, 2.0, backend="torch"), atol=0, rtol=0)
    one = image(torch.float32, (1, 2, 1, 1), 6)  # a single pixel blurs to itself
    torch.testing.assert_close(F.gaussian_blur(one, 5, 1.0), one, atol=1e-6, rtol=0)


def test_fused_pipeline_two_stages_matches_reference():
    """Blur after geometry and color ops (a second stage) and before erasing / normalize."""
    x = image(torch.uint8, (6, 3, 20, 18), 11)
    aug = fastaug.Compose([
        fastaug.RandomAffine(20, translate=(0.1, 0.1), interpolation="bilinear"),
        fastaug.ColorJitter(0.3, 0.3, 0.3, 0.05),
        fastaug.GaussianBlur(5, (0.2, 2.0)),
        fastaug.RandomAutocontrast(p=0.5),
        fastaug.RandomErasing(p=0.5),
        fastaug.Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3]),
    ], seed=3)  # fmt: skip
    out, record = aug(x, return_record=True)
    plan = compile_plan(record.op_calls, tuple(x.shape), x.dtype, x.device)
    assert len(plan.stages) == 2 and plan.stages[1].radius == 2 and plan.stages[1].taps.shape == (6, 2, 5)
    ref = aug(x, backend="torch")
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(record.replay(x), out, atol=0, rtol=0)


@needs_tv
def test_record_lists_torchvision_calls():
    x = image(torch.uint8, (3, 3, 11, 12), 4)
    aug = fastaug.Compose([fastaug.GaussianBlur((3, 5), (0.5, 1.5))], seed=1)
    out, record = aug(x, return_record=True)
    for i in range(3):
        ((name, kw),) = record.calls(i)
        assert name == "gaussian_blur" and kw["kernel_size"] == [3, 5]
        assert 0.5 <= kw["sigma"][0] == kw["sigma"][1] <= 1.5
        want = TF.gaussian_blur(x[i], **kw)
        assert (out[i].int() - want.int()).abs().max() <= 1


def test_transform_draws_per_sample_and_replays():
    x = image(torch.float32, (8, 3, 9, 9), 2)
    aug = fastaug.Compose([fastaug.GaussianBlur(3, (0.1, 2.0))], seed=0)
    _, rec = aug(x, return_record=True)
    sig = [rec.calls(i)[0][1]["sigma"][0] for i in range(8)]
    assert len(set(sig)) == 8 and all(0.1 <= s <= 2.0 for s in sig)
    _, rec2 = aug(x, indices=torch.arange(8), return_record=True)
    assert [rec2.calls(i)[0][1]["sigma"][0] for i in range(8)] == sig


def test_gradcheck_image_and_sigma():
    x = image(torch.float64, (2, 2, 6, 7), 9).requires_grad_(True)
    sigma = torch.tensor([[0.6, 1.1], [1.4, 0.8]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, s: F.gaussian_blur(a, (3, 5), s, backend="torch"), (x, sigma))


def test_numba_backward_matches_reference():
    """Through a fused pipeline (the blur stage's backward is the reference's; the other stage's numba's)."""
    x = image(torch.float32, (3, 3, 12, 10), 8)
    grads = {}
    for backend in ("torch", "numba"):
        xx = x.clone().requires_grad_(True)
        sigma = torch.tensor([0.5, 1.0, 2.0], requires_grad=True)
        angle = torch.tensor([5.0, -10.0, 20.0], requires_grad=True)
        y = F.rotate(F.adjust_brightness(xx, 1.2, backend=backend), angle, interpolation="bilinear", backend=backend)
        out = F.gaussian_blur(y, 5, sigma, backend=backend)
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(0)))
        grads[backend] = (xx.grad, sigma.grad, angle.grad)
    for a, b in zip(grads["numba"], grads["torch"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert grads["torch"][1].abs().min() > 0  # sigma gets a gradient


@pytest.mark.parametrize(
    "kw,exc,name",
    [
        ({"kernel_size": 4}, ValueError, "kernel_size"),
        ({"kernel_size": -3}, ValueError, "kernel_size"),
        ({"kernel_size": 3.0}, TypeError, "kernel_size"),
        ({"kernel_size": (3, 5, 7)}, TypeError, "kernel_size"),
        ({"kernel_size": 3, "sigma": 0.0}, ValueError, "sigma"),
        ({"kernel_size": 3, "sigma": -1.0}, ValueError, "sigma"),
        ({"kernel_size": 3, "sigma": float("nan")}, ValueError, "sigma"),
        ({"kernel_size": 3, "sigma": torch.ones(5)}, ValueError, "sigma"),
        ({"kernel_size": 3, "sigma": "1"}, TypeError, "sigma"),
    ],
)
def test_bad_input(kw, exc, name):
    with pytest.raises(exc, match=name):
        F.gaussian_blur(torch.rand(3, 3, 8, 8), **kw)


@pytest.mark.parametrize("kw,exc", [({"kernel_size": 2}, ValueError), ({"kernel_size": 3, "sigma": (0.0, 1.0)}, ValueError),
                                    ({"kernel_size": 3, "sigma": (2.0, 1.0)}, ValueError)])  # fmt: skip
def test_transform_bad_input(kw, exc):
    with pytest.raises(exc):
        fastaug.GaussianBlur(**kw)


def test_sigma_tensor_shapes_mean_the_same_for_every_batch_size():
    """A 1-D sigma tensor is one value per sample (for both axes), whatever the batch size; (x, y) go as [B, 2]."""
    for b in (2, 3):
        x = image(torch.float32, (b, 3, 8, 8), b)
        s = torch.linspace(0.5, 2.0, b)
        torch.testing.assert_close(F.gaussian_blur(x, 5, s), F.gaussian_blur(x, 5, torch.stack([s, s], 1)), atol=0, rtol=0)
    with pytest.raises(ValueError, match="sigma"):
        F.gaussian_blur(image(torch.float32, (3, 3, 8, 8), 1), 5, torch.tensor([0.5, 2.0]))
    with pytest.raises(ValueError, match="sigma"):
        F.gaussian_blur(image(torch.float32, (2, 3, 8, 8), 1), 5, torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
