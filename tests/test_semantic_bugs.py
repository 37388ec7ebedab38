"""Regression tests for semantic bugs: torchvision parity of ColorJitter's ranges, Normalize's place in a
pipeline, Record listings and replay, ToDtype's dtypes, non-finite arguments, huge erase boxes,
degenerate perspective points and the randomness key (epoch, indices).

Where the bug is about torchvision parity, the expected values come from torchvision itself (skipped
when it is not installed); every error must be a ValueError / TypeError naming the argument.
"""

from __future__ import annotations

import re

import pytest
import torch
import tv

import fastaug
import fastaug.functional as FA
from fastaug.data import Collate

TF = tv.load()
needs_tv = pytest.mark.skipif(TF is None, reason="torchvision is not installed")

B, C, H, W = 4, 3, 9, 11
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def u8(b=B, c=C, h=H, w=W, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def f32(b=B, c=C, h=H, w=W, seed=0) -> torch.Tensor:
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def raises(fn, name: str, exc=(ValueError, TypeError)):
    """``fn()`` raises ``exc`` (ValueError / TypeError) whose message names ``name`` as a word."""
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    assert re.search(rf"\b{re.escape(name)}\b", msg), f"message {msg!r} does not name {name!r}"


def tv_transforms():
    """torchvision.transforms.v2 (importable once tv.load() succeeded)."""
    import torchvision.transforms.v2 as T

    return T


def close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    if ref.dtype == torch.uint8:
        assert int((ours.int() - ref.int()).abs().max()) <= 1
    else:
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def tv_call(img: torch.Tensor, name: str, kwargs: dict) -> torch.Tensor:
    """torchvision's functional op ``name`` on one image with a Record listing's plain kwargs."""
    kw = dict(kwargs)
    if name == "erase":
        kw["v"] = torch.tensor(kw["v"], dtype=torch.float32 if img.is_floating_point() else torch.float64).view(-1, 1, 1)
    if name == "normalize" and not img.is_floating_point():
        raise AssertionError("torchvision's normalize needs a float image")
    return getattr(TF, name)(img, **kw)


# ------------------------------------------------------------------- 1. ColorJitter's (0, 0) ranges
@needs_tv
@pytest.mark.parametrize("part", ["brightness", "contrast", "saturation"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=["uint8", "float32"])
def test_color_jitter_zero_range_applies_factor_zero(part, dtype):
    x = u8() if dtype == torch.uint8 else f32()
    y = fastaug.Compose([fastaug.ColorJitter(**{part: (0, 0)})], backend="torch")(x)
    fn = getattr(TF, f"adjust_{part}")
    close(y, torch.stack([fn(x[i], 0.0) for i in range(B)]))
    assert not torch.equal(y, x)


@needs_tv
@pytest.mark.parametrize(
    "kw",
    [
        dict(brightness=0), dict(contrast=0), dict(saturation=0), dict(hue=0), dict(hue=(0, 0)),
        dict(brightness=(1, 1)), dict(brightness=(0, 0)), dict(contrast=(0.0, 0.0)), dict(saturation=(0, 0.5)),
        dict(brightness=0.5), dict(brightness=1.5), dict(hue=(-0.1, 0.2)), dict(contrast=(2, 2)),
    ],
    ids=repr,
)
def test_color_jitter_ranges_match_torchvision(kw):
    T = tv_transforms()
    ours, theirs = fastaug.ColorJitter(**kw), T.ColorJitter(**kw)
    for part in ("brightness", "contrast", "saturation", "hue"):
        assert getattr(ours, part) == getattr(theirs, part), part


def test_color_jitter_scalar_zero_is_off():
    x = u8()
    aug = fastaug.Compose([fastaug.ColorJitter(brightness=0, contrast=0, saturation=0, hue=0)], backend="torch")
    assert torch.equal(aug(x), x)


# ------------------------------------------------------------- 2. geometry after Normalize is an error
@pytest.mark.parametrize(
    "geo",
    [
        lambda: fastaug.RandomAffine(10, fill=0),
        lambda: fastaug.RandomRotation(10),
        lambda: fastaug.RandomHorizontalFlip(p=1.0),
        lambda: fastaug.RandomResizedCrop(6),
        lambda: fastaug.RandomPerspective(p=1.0),
    ],
    ids=["affine", "rotation", "flip", "resized_crop", "perspective"],
)
def test_geometry_after_normalize_raises(geo):
    aug = fastaug.Compose([fastaug.Normalize(MEAN, STD), geo()], backend="torch")
    with pytest.raises(ValueError, match="Normalize must come after every color and geometric op"):
        aug(f32())
    fastaug.Compose([geo(), fastaug.Normalize(MEAN, STD)], backend="torch")(f32())  # the right order is fine


# ------------------------------------------------------------------------- 3. Record listing, replay
@needs_tv
@pytest.mark.parametrize(
    "dtype,transforms",
    [
        (torch.uint8, lambda: [fastaug.RandomErasing(p=1.0, value=17), fastaug.RandomInvert(p=1.0)]),
        (
            torch.float32,
            lambda: [
                fastaug.RandomErasing(p=1.0, value=0.25),
                fastaug.RandomInvert(p=1.0),
                fastaug.RandomHorizontalFlip(p=1.0),
                fastaug.ColorJitter(brightness=(0.5, 0.9)),
                fastaug.Normalize(MEAN, STD),
            ],
        ),
        (torch.uint8, lambda: [fastaug.RandomErasing(p=1.0, value=100), fastaug.ToDtype(torch.float32, scale=True)]),
        (torch.float32, lambda: [fastaug.RandomErasing(p=1.0, value=0.5), fastaug.ToDtype(torch.uint8, scale=True)]),
        (
            torch.float32,
            lambda: [fastaug.RandomVerticalFlip(p=1.0), fastaug.Normalize(MEAN, STD), fastaug.RandomErasing(p=1.0, value=3.0)],
        ),
    ],
    ids=["u8-erase-invert", "f32-erase-invert-flip-jitter-normalize", "u8-erase-to-float", "f32-erase-to-u8", "erase-after-normalize"],
)
def test_record_calls_are_in_execution_order(dtype, transforms):
    """Replaying sample i's listed calls in order with torchvision gives the batch's sample i."""
    x = u8() if dtype == torch.uint8 else f32()
    y, record = fastaug.Compose(transforms(), seed=5, backend="torch")(x, return_record=True)
    for i in range(B):
        calls = record.calls(i)
        names = [n for n, _ in calls]
        if "invert" in names:
            assert names.index("invert") < names.index("erase")
        img = x[i]
        for name, kwargs in calls:
            img = tv_call(img, name, kwargs)
        close(img, y[i])


def test_record_replay_keeps_straight_through():
    x = f32().requires_grad_()
    aug = fastaug.Compose([fastaug.RandomPosterize(3, p=1.0)], backend="torch", straight_through=True)
    y, record = aug(x, return_record=True)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(g, torch.ones_like(x))  # straight-through: identity gradient
    x2 = x.detach().clone().requires_grad_()
    y2 = record.replay(x2, backend="torch")
    assert torch.equal(y2, y)
    (g2,) = torch.autograd.grad(y2.sum(), x2)
    assert torch.equal(g2, g)


# --------------------------------------------------------------------------- 4. ToDtype's dtypes
@pytest.mark.parametrize("dtype", [torch.int8, torch.int32, torch.bool, torch.int16, torch.complex64, "float32", None], ids=str)
def test_to_dtype_transform_validates_like_the_functional_op(dtype):
    raises(lambda: FA.to_dtype(u8(), dtype, scale=True, backend="torch"), "dtype", TypeError)
    raises(lambda: fastaug.ToDtype(dtype, scale=True), "dtype", TypeError)


def test_to_dtype_int8_does_not_wrap():
    with pytest.raises(TypeError, match="dtype"):
        fastaug.Compose([fastaug.ToDtype(torch.int8)], backend="torch")(torch.full((1, 1, 2, 2), 128, dtype=torch.uint8))
    for dtype in (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64):
        fastaug.ToDtype(dtype, scale=True)


# ------------------------------------------------------------------- 5. non-finite / negative arguments
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "kw,name",
    [
        (dict(brightness=(-1.0, 1.0)), "brightness"),
        (dict(brightness=(NAN, 1.0)), "brightness"),
        (dict(brightness=(0.5, NAN)), "brightness"),
        (dict(brightness=NAN), "brightness"),
        (dict(brightness=INF), "brightness"),
        (dict(contrast=(-0.5, 1.0)), "contrast"),
        (dict(contrast=(NAN, NAN)), "contrast"),
        (dict(saturation=(-2.0, -1.0)), "saturation"),
        (dict(saturation=(1.0, INF)), "saturation"),
        (dict(hue=(NAN, 0.1)), "hue"),
        (dict(hue=NAN), "hue"),
        (dict(brightness=(2.0, 1.0)), "brightness"),
    ],
    ids=repr,
)
def test_color_jitter_rejects_bad_bounds(kw, name):
    raises(lambda: fastaug.ColorJitter(**kw), name, ValueError)


@pytest.mark.parametrize("value", [NAN, INF, -1.0])
def test_random_adjust_sharpness_rejects_bad_factor(value):
    raises(lambda: fastaug.RandomAdjustSharpness(value), "sharpness_factor", ValueError)


@pytest.mark.parametrize(
    "op,name",
    [
        (lambda x, v: FA.adjust_brightness(x, v, backend="torch"), "brightness_factor"),
        (lambda x, v: FA.adjust_sharpness(x, v, backend="torch"), "sharpness_factor"),
        (lambda x, v: FA.adjust_gamma(x, v, backend="torch"), "gamma"),
        (lambda x, v: FA.rotate(x, v, backend="torch"), "angle"),
        (lambda x, v: FA.affine(x, 0.0, [0.0, 0.0], 1.0, [v, 0.0], backend="torch"), "shear"),
        (lambda x, v: FA.erase(x, 0, 0, v, 2, 0, backend="torch"), "h"),
    ],
    ids=["brightness", "sharpness", "gamma", "rotate", "shear", "erase-h"],
)
@pytest.mark.parametrize("as_tensor", [False, True], ids=["number", "tensor"])
def test_per_sample_rejects_inf(op, name, as_tensor):
    v = torch.tensor([1.0, INF, 1.0, 1.0]) if as_tensor else INF
    if name == "shear" and as_tensor:
        v = INF  # shear's per-sample form is [B,2]
    raises(lambda: op(u8(), v), name, ValueError)


@pytest.mark.parametrize(
    "fill",
    [NAN, [0.0, NAN, 0.0], torch.tensor([0.0, 0.0, NAN]), torch.full((B, C), NAN), INF, [INF]],
    ids=["nan", "list-nan", "tensor-nan", "per-sample-nan", "inf", "list-inf"],
)
def test_fills_reject_nan(fill):
    x = u8()
    raises(lambda: FA.rotate(x, 10.0, fill=fill, backend="torch"), "fill", ValueError)
    raises(lambda: FA.affine(x, 10.0, [0.0, 0.0], 1.0, [0.0, 0.0], fill=fill, backend="torch"), "fill", ValueError)
    raises(lambda: FA.erase(x, 1, 1, 2, 2, fill, backend="torch"), "v", ValueError)
    raises(lambda: FA.xy_masking(x, num_masks_x=1, mask_x_length=2, fill=fill, backend="torch"), "fill", ValueError)


@pytest.mark.parametrize("fill", [NAN, [0.0, NAN, 0.0]], ids=["nan", "list-nan"])
def test_transform_and_policy_fills_reject_nan(fill):
    raises(lambda: fastaug.RandomAffine(10, fill=fill), "fill", ValueError)
    raises(lambda: fastaug.RandomRotation(10, fill=fill), "fill", ValueError)
    raises(lambda: fastaug.RandomPerspective(fill=fill), "fill", ValueError)
    raises(lambda: fastaug.XYMasking(1, 0, 2, fill=fill), "fill", ValueError)
    raises(lambda: fastaug.RandomErasing(p=1.0, value=fill), "value", ValueError)
    raises(lambda: fastaug.RandAugment(fill=fill), "fill", ValueError)
    raises(lambda: fastaug.AutoAugment(fill=fill), "fill", ValueError)


def test_transform_tensor_fills_reject_nan_when_drawing():
    fill = torch.tensor([0.0, NAN, 0.0])
    raises(lambda: fastaug.Compose([fastaug.RandomAffine(10, fill=fill)], backend="torch")(u8()), "fill", ValueError)
    raises(lambda: fastaug.Compose([fastaug.RandomErasing(p=1.0, value=fill)], backend="torch")(u8()), "value", ValueError)


@pytest.mark.parametrize(
    "mean,std,name",
    [
        ([0.5, NAN, 0.5], [0.2] * 3, "mean"),
        ([0.5, INF, 0.5], [0.2] * 3, "mean"),
        ([0.5] * 3, [0.2, NAN, 0.2], "std"),
        ([0.5] * 3, [INF, 0.2, 0.2], "std"),
        (torch.tensor([0.5, 0.5, NAN]), [0.2] * 3, "mean"),
        ([0.5] * 3, torch.tensor([0.2, -INF, 0.2]), "std"),
    ],
    ids=["mean-nan", "mean-inf", "std-nan", "std-inf", "mean-tensor-nan", "std-tensor-inf"],
)
def test_normalize_rejects_non_finite_mean_std(mean, std, name):
    raises(lambda: FA.normalize(f32(), mean, std, backend="torch"), name, ValueError)
    raises(lambda: fastaug.Compose([fastaug.Normalize(mean, std)], backend="torch")(f32()), name, ValueError)


# ------------------------------------------------------------------------------- 6. huge erase boxes
@needs_tv
@pytest.mark.parametrize(
    "i,j,h,w",
    [(0, 0, 2**31, 2**31), (2, 3, 2**31 - 1, 4), (1, 1, 3, 2**40), (0, 5, 2**31 + 7, 2**32)],
    ids=["size-2^31", "end-2^31", "w-2^40", "mixed"],
)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=["uint8", "float32"])
def test_erase_huge_box_is_clipped_like_torchvision(i, j, h, w, dtype):
    x = u8() if dtype == torch.uint8 else f32()
    v = torch.tensor([7.0, 8.0, 9.0]) if dtype == torch.uint8 else torch.tensor([0.1, 0.2, 0.3])
    y = FA.erase(x, i, j, h, w, v, backend="torch")
    want = torch.stack([TF.erase(x[k], i, j, h, w, v.to(x.dtype).view(-1, 1, 1)) for k in range(B)])
    assert torch.equal(y, want)
    assert not torch.equal(y, x)


# ------------------------------------------------------------------- 7. perspective points, epoch, indices
@pytest.mark.parametrize(
    "sp,ep,name",
    [
        ([[3, 3]] * 4, [[0, 0], [8, 0], [8, 6], [0, 6]], "startpoints"),
        ([[0, 0], [8, 0], [8, 6], [0, 6]], [[2, 2]] * 4, "endpoints"),
        ([[0, 0], [1, 1], [2, 2], [3, 3]], [[0, 0], [8, 0], [8, 6], [0, 6]], "startpoints"),
        ([[0, 0], [8, 0], [8, 6], [0, 6]], [[0, 0], [4, 0], [8, 0], [0, 6]], "endpoints"),
    ],
    ids=["start-equal", "end-equal", "start-collinear", "end-three-collinear"],
)
def test_degenerate_perspective_points(sp, ep, name):
    raises(lambda: FA.perspective(u8(), sp, ep, backend="torch"), name, ValueError)
    per_sample_sp = torch.tensor([[[0, 0], [8, 0], [8, 6], [0, 6]]] * B, dtype=torch.float64)
    per_sample_sp[2] = torch.tensor(sp, dtype=torch.float64)
    per_sample_ep = torch.tensor([[[1, 0], [8, 1], [7, 6], [0, 5]]] * B, dtype=torch.float64)
    per_sample_ep[1] = torch.tensor(ep, dtype=torch.float64)
    if name == "startpoints":
        raises(lambda: FA.perspective(u8(), per_sample_sp, per_sample_ep[[0, 0, 0, 0]], backend="torch"), name, ValueError)
    else:
        raises(lambda: FA.perspective(u8(), per_sample_sp[[0, 0, 0, 0]], per_sample_ep, backend="torch"), name, ValueError)


def pipeline(seed=0):
    return fastaug.Compose([fastaug.RandomAffine(20), fastaug.ColorJitter(0.4, 0.4)], seed=seed, backend="torch")


@pytest.mark.parametrize("epoch", ["1", 1.5, None, True, torch.tensor(1.0), torch.tensor([1, 2])], ids=repr)
def test_bad_epoch_type(epoch):
    raises(lambda: pipeline()(u8(), epoch=epoch), "epoch", TypeError)
    raises(lambda: fastaug.RandAugment()(u8(), epoch=epoch), "epoch", TypeError)
    raises(lambda: FA.xy_masking(u8(), num_masks_x=1, mask_x_length=2, epoch=epoch, backend="torch"), "epoch", TypeError)


@pytest.mark.parametrize("epoch", [-1, -(2**40), 2**32, torch.tensor(-1)], ids=repr)
def test_bad_epoch_value(epoch):
    raises(lambda: pipeline()(u8(), epoch=epoch), "epoch", ValueError)
    raises(lambda: fastaug.TrivialAugmentWide()(u8(), epoch=epoch), "epoch", ValueError)
    raises(lambda: FA.xy_masking(u8(), num_masks_x=1, mask_x_length=2, epoch=epoch, backend="torch"), "epoch", ValueError)


def test_collate_epoch_errors():
    raises(lambda: Collate().set_epoch("1"), "epoch", TypeError)
    raises(lambda: Collate().set_epoch(1.5), "epoch", TypeError)
    raises(lambda: Collate().set_epoch(-1), "epoch", ValueError)


def test_epoch_may_be_an_integer_tensor():
    x = u8()
    assert torch.equal(pipeline()(x, epoch=torch.tensor(3)), pipeline()(x, epoch=3))
    assert torch.equal(pipeline()(x, epoch=2**32 - 1), pipeline()(x, epoch=torch.tensor(2**32 - 1)))


@pytest.mark.parametrize(
    "indices", [torch.tensor([0, 1, -1, 3]), [5, -2, 0, 1], torch.tensor([-(2**40), 0, 1, 2])], ids=["tensor", "list", "huge"]
)
def test_negative_indices(indices):
    raises(lambda: pipeline()(u8(), indices=indices), "indices", ValueError)
    raises(lambda: fastaug.RandAugment()(u8(), indices=indices), "indices", ValueError)
    raises(
        lambda: FA.xy_masking(u8(), num_masks_x=1, mask_x_length=2, indices=torch.as_tensor(indices), backend="torch"),
        "indices",
        ValueError,
    )


def test_xy_masking_bad_indices_and_seed():
    raises(lambda: FA.xy_masking(u8(), num_masks_x=1, mask_x_length=2, indices=torch.zeros(3, dtype=torch.int64)), "indices")
    raises(lambda: FA.xy_masking(u8(), num_masks_x=1, mask_x_length=2, indices=torch.zeros(B)), "indices")
    raises(lambda: FA.xy_masking(u8(), num_masks_x=1, mask_x_length=2, seed="0"), "seed", TypeError)


def test_new_checks_never_read_values_on_the_device():
    """On the meta device tensors have no values: the checks of epoch, indices, fills, magnitudes, points and
    mean / std run there without reading any (on a GPU: no host sync and no device assert, ``fastaug.validation``)."""
    from fastaug import validation

    meta = torch.device("meta")
    assert validation.check_epoch(torch.tensor(3, device=meta)).device == meta
    assert validation.check_indices(torch.arange(B, device=meta), B, meta).dtype == torch.int64
    assert validation.fill_values(torch.zeros(B, C, device=meta), B, C, meta).device == meta
    assert validation.per_sample(torch.ones(B, device=meta), B, "angle", meta).device == meta
    FA.check_mean_std(torch.zeros(C, device=meta), torch.ones(C, device=meta))
    cv = FA.Canvas(B, C, H, W, meta)
    corners = torch.tensor([[0, 0], [8, 0], [8, 6], [0, 6]], dtype=torch.float64)
    call = FA.perspective_call(cv, corners.expand(B, 4, 2).to(meta), corners.expand(B, 4, 2).to(meta))
    assert call.matrix.device == meta
