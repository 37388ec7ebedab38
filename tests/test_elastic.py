"""elastic_transform and ElasticTransform: torchvision per sample for a given displacement, backends against the
reference, the drawn field's distribution against torchvision's, composition with the other geometric ops, masks,
boxes and keypoints, gradients, bad input. (Triton: tests/test_triton_backend.py.)"""

from __future__ import annotations

import pytest
import torch
from images import image, image_in_layout
from tv import load

import fastaug
import fastaug.functional as F

TF = load()
needs_tv = pytest.mark.skipif(TF is None, reason="torchvision not installed")


def _field(b: int, h: int, w: int, seed: int, amp: float = 0.2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, h, w, 2, generator=g) * 2 - 1) * amp


@needs_tv
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
@pytest.mark.parametrize("fill", [None, [0.2, 0.5, 0.9]])
def test_equals_torchvision_per_sample(dtype, interpolation, fill):
    x = image(dtype, (3, 3, 19, 26), 1)
    d = _field(3, 19, 26, 2)
    f = None if fill is None else [v * 255 if dtype == torch.uint8 else v for v in fill]
    got = F.elastic_transform(x, d, interpolation, f)
    for i in range(3):
        want = TF.elastic_transform(x[i], d[i : i + 1], interpolation=TF.InterpolationMode(interpolation), fill=f)
        diff = (got[i].double() - want.double()).abs()
        tol = 1.0 if dtype == torch.uint8 else 1e-5
        # nearest: a coordinate within rounding of k + 1/2 may pick the other neighbour (torchvision's grid is float32)
        bad = float((diff > tol).double().mean())
        assert bad < (0.01 if interpolation == "nearest" else 1e-9), (i, bad, float(diff.max()))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_numba_equals_reference(dtype, layout):
    x = image_in_layout(dtype, (3, 3, 14, 17), 3, layout)
    aug = fastaug.Compose([fastaug.RandomAffine(15, scale=(0.8, 1.2)), fastaug.ElasticTransform(30.0, 3.0, fill=7),
                           fastaug.ColorJitter(0.2, 0.2)], seed=1)  # fmt: skip
    got, want = aug(x, backend="numba"), aug(x, backend="torch")
    if dtype == torch.float64:  # CONTRAST's float64 gray mean is a float64 sum: its last bit follows the summation order
        torch.testing.assert_close(got, want, atol=4e-16, rtol=0)
    else:
        assert torch.equal(got, want)
    d = _field(3, 14, 17, 4)
    for interp in ("nearest", "bilinear"):
        assert torch.equal(F.elastic_transform(x, d, interp, backend="numba"), F.elastic_transform(x, d, interp, backend="torch"))


@needs_tv
def test_field_distribution_like_torchvision():
    """The drawn displacement (alpha, sigma) has torchvision's spread and smoothness (its make_params, many draws)."""
    T = pytest.importorskip("torchvision.transforms.v2")
    h, w, n = 48, 64, 24
    x = torch.zeros(n, 1, h, w)
    aug = fastaug.ElasticTransform(alpha=(40.0, 20.0), sigma=4.0)
    calls = aug.calls(fastaug.transforms.Context(F.Canvas(n, 1, h, w, x.device), 3, 0, torch.arange(n), 64, False))
    ours = calls[0].kwargs["displacement"]
    tv = T.ElasticTransform(alpha=(40.0, 20.0), sigma=4.0)
    torch.manual_seed(0)
    theirs = torch.cat([tv.make_params([torch.zeros(1, h, w)])["displacement"] for _ in range(n)])
    for axis in range(2):
        a, b = ours[..., axis].std(), theirs[..., axis].std()
        assert abs(float(a / b) - 1) < 0.15, (axis, float(a), float(b))
        ga = (ours[:, :, 1:, axis] - ours[:, :, :-1, axis]).abs().mean() / a
        gb = (theirs[:, :, 1:, axis] - theirs[:, :, :-1, axis]).abs().mean() / b
        assert abs(float(ga / gb) - 1) < 0.2


def test_pipeline_replays_and_lists_calls():
    x = image(torch.uint8, (4, 3, 20, 24), 5)
    aug = fastaug.Compose([fastaug.RandomResizedCrop((16, 18)), fastaug.ElasticTransform(20.0, 2.0)], seed=2)
    out, rec = aug(x, return_record=True)
    torch.testing.assert_close(rec.replay(x), out, atol=0, rtol=0)
    names = [n for n, _ in rec.calls(0)]
    assert names == ["resized_crop", "elastic_transform"]
    kw = rec.calls(1)[1][1]
    assert torch.as_tensor(kw["displacement"]).shape == (16, 18, 2)


def test_elastic_must_be_the_last_geometric_op():
    x = image(torch.uint8, (2, 3, 20, 24), 6)
    with pytest.raises(ValueError, match="elastic_transform must be the last geometric op"):
        fastaug.Compose([fastaug.ElasticTransform(sigma=1.0), fastaug.RandomHorizontalFlip()])(x)


def test_masks_boxes_and_keypoints_follow():
    """A constant displacement is a translation: masks, boxes and keypoints move by it exactly."""
    h, w = 20, 30
    x = image(torch.float32, (2, 3, h, w), 7)
    mask = torch.zeros(2, h, w, dtype=torch.int64)
    mask[:, 5:10, 8:16] = 3
    shift = torch.tensor([3.0, -2.0])  # pixels (x, y): output (j, i) reads input (j + 3, i - 2)
    d = (shift / torch.tensor([w / 2, h / 2])).expand(2, h, w, 2)
    calls = [F.elastic_call(F.Canvas(2, 3, h, w, x.device), d, "nearest")]
    from fastaug import targets
    from fastaug.compiler import compile_plan

    moved = targets.transform_masks(mask, calls, "numba")
    assert torch.equal(moved[:, 7:12, 5:13], mask[:, 5:10, 8:16]) and int((moved == 3).sum()) == 2 * 40
    plan = compile_plan(calls, tuple(x.shape), x.dtype, x.device)
    boxes, _ = targets.transform_boxes([torch.tensor([[8.0, 5.0, 16.0, 10.0]])] * 2, None, plan.notes["matrix64"], plan.out_size,
                                       displacement=plan.notes["displacement"])  # fmt: skip
    torch.testing.assert_close(boxes[0], torch.tensor([[5.0, 7.0, 13.0, 12.0]]))
    kps, vis = targets.transform_keypoints([torch.tensor([[10.5, 6.25], [1.0, 1.0]])] * 2, plan.notes["matrix64"], plan.out_size,
                                           plan.notes["displacement"])  # fmt: skip
    torch.testing.assert_close(kps[0], torch.tensor([[7.5, 8.25], [-2.0, 3.0]]))
    assert vis[0].tolist() == [True, False]


def test_gradients_to_image_fill_and_displacement():
    x = torch.rand(2, 2, 6, 7, dtype=torch.float64)
    d = _field(2, 6, 7, 8, 0.3).double()
    fill = torch.tensor([0.3, 0.6], dtype=torch.float64)
    torch.autograd.gradcheck(lambda im, dd, f: F.elastic_transform(im, dd, "bilinear", f, backend="torch"),
                             (x.requires_grad_(), d.requires_grad_(), fill.requires_grad_()))  # fmt: skip
    grads = []
    for backend in ("torch", "numba"):
        xx = x.float().detach().requires_grad_(True)
        dd = d.float().detach().requires_grad_(True)
        y = F.adjust_brightness(F.elastic_transform(xx, dd, backend=backend), 1.2, backend=backend)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(0)))
        grads.append((xx.grad, dd.grad))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("call,exc,name", [
    (lambda x: F.elastic_transform(x, torch.zeros(2, 8, 7, 2)), ValueError, "displacement"),
    (lambda x: F.elastic_transform(x, torch.zeros(2, 8, 8, 2, dtype=torch.int64)), TypeError, "displacement"),
    (lambda x: F.elastic_transform(x, torch.full((1, 8, 8, 2), float("nan"))), ValueError, "displacement"),
    (lambda x: F.elastic_transform(x, torch.zeros(1, 8, 8, 2), "bicubic"), ValueError, "interpolation"),
    (lambda x: fastaug.ElasticTransform(alpha=-1.0), ValueError, "alpha"),
    (lambda x: fastaug.ElasticTransform(sigma=(1.0, 2.0, 3.0)), TypeError, "sigma"),
    (lambda x: fastaug.Compose([fastaug.ElasticTransform(sigma=5.0)])(x), ValueError, "sigma"),
])  # fmt: skip
def test_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call(torch.rand(2, 3, 8, 8))
