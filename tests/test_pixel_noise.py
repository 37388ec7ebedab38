"""pixel_dropout, salt_and_pepper, multiplicative_noise and their transforms: the formulas on the counter-based
uniforms (float64 oracles), the rates they produce, backends against the reference, replay, gradients, bad input.
(Triton: tests/test_triton_backend.py.)"""

from __future__ import annotations

import pytest
import torch
from images import image, image_in_layout

import fastaug
import fastaug.functional as F
from fastaug import rng
from fastaug.ops import counter

KEYS = rng.key(0, 0, torch.arange(3), 0)  # explicit per-sample keys (``key=``) for the formula tests


def _uniforms(b: int, c: int, h: int, w: int, per_channel: bool) -> torch.Tensor:
    return counter.pixel_uniform(KEYS[:b], c if per_channel else 1, h, w, torch.float64)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("per_channel", [False, True])
def test_pixel_dropout_formula_and_rate(dtype, per_channel):
    x = image(dtype, (3, 3, 64, 48), 1)
    p = torch.tensor([0.05, 0.3, 0.0])
    value = 200.7 if dtype == torch.uint8 else 0.25
    got = F.pixel_dropout(x, p, per_channel, value, key=KEYS, backend="torch")
    u = _uniforms(3, 3, 64, 48, per_channel)
    fill = 200 if dtype == torch.uint8 else 0.25
    want = torch.where(u < p.double().view(3, 1, 1, 1), torch.tensor(fill, dtype=torch.float64), x.double()).to(dtype)
    assert torch.equal(got, want.expand_as(got))  # the drop mask: one per pixel (shared) or per pixel and channel
    rate = (u < p.double().view(3, 1, 1, 1)).double().mean((1, 2, 3))
    torch.testing.assert_close(rate, p.double(), atol=0.02, rtol=0)
    assert torch.equal(got[2], x[2])


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_salt_and_pepper_formula_and_rates(dtype):
    x = image(dtype, (2, 3, 80, 80), 2) // 2 + (64 if dtype == torch.uint8 else 0.25)  # no pixel is white or black yet
    a, r = torch.tensor([0.1, 0.4]), torch.tensor([0.5, 0.25])
    got = F.salt_and_pepper(x, a, r, key=KEYS[:2], backend="torch")
    u = _uniforms(2, 3, 80, 80, False)
    top = 255.0 if dtype == torch.uint8 else 1.0
    want = torch.where(u < (a * r).double().view(2, 1, 1, 1), top, torch.where(u < a.double().view(2, 1, 1, 1), 0.0, x.double()))
    assert torch.equal(got, want.to(dtype))
    salt = (got == top).all(1).double().mean((1, 2))
    pepper = (got == 0).all(1).double().mean((1, 2))
    torch.testing.assert_close(salt, (a * r).double(), atol=0.01, rtol=0)
    torch.testing.assert_close(pepper, (a * (1 - r)).double(), atol=0.01, rtol=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("per_channel", [False, True])
def test_multiplicative_noise_formula(dtype, per_channel):
    x = image(dtype, (2, 3, 20, 24), 3)
    got = F.multiplicative_noise(x, 0.7, 1.3, per_channel, key=KEYS[:2], backend="torch")
    u = _uniforms(2, 3, 20, 24, per_channel).float()
    m = 0.7 + (1.3 - 0.7) * u  # in float32, as the kernels
    if dtype == torch.uint8:
        want = torch.floor(torch.clamp(x.float() * m, 0, 255)).to(torch.uint8)
        assert (got.int() - want.int()).abs().max() <= 1 and (got == want).double().mean() > 0.999
    else:
        torch.testing.assert_close(got, torch.clamp(x * m, 0, 1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_numba_equals_reference_exactly(dtype, layout):
    x = image_in_layout(dtype, (4, 3, 15, 14), 7, layout)
    for fn in (lambda im, be: F.pixel_dropout(im, 0.2, True, 0.0, seed=3, backend=be),
               lambda im, be: F.pixel_dropout(im, torch.tensor([0.1, 0.2, 0.3, 0.9]), False, 1.0, seed=3, backend=be),
               lambda im, be: F.salt_and_pepper(im, 0.2, 0.3, seed=4, backend=be),
               lambda im, be: F.multiplicative_noise(im, 0.5, 1.5, True, seed=5, backend=be)):  # fmt: skip
        assert torch.equal(fn(x, "numba"), fn(x, "torch"))


def test_transforms_draw_per_sample_and_replay():
    x = image(torch.uint8, (8, 3, 16, 16), 4)
    aug = fastaug.Compose([
        fastaug.RandomAffine(10), fastaug.PixelDropout(0.1, per_channel=True, drop_value=7, p=0.7),
        fastaug.SaltAndPepper(p=0.7), fastaug.MultiplicativeNoise((0.8, 1.2), elementwise=True, p=0.7),
        fastaug.MultiplicativeNoise((0.5, 0.6), p=0.7), fastaug.RandomAutocontrast(p=0.5),
    ], seed=2)  # fmt: skip
    out, rec = aug(x, indices=torch.arange(50, 58), return_record=True)
    torch.testing.assert_close(rec.replay(x), out, atol=0, rtol=0)
    torch.testing.assert_close(aug(x, indices=torch.arange(50, 58), backend="torch"), out, atol=0, rtol=0)
    names = {n for i in range(8) for n, _ in rec.calls(i)}
    assert {"pixel_dropout", "salt_and_pepper", "multiplicative_noise", "adjust_brightness"} <= names
    for i in range(8):
        for n, kw in rec.calls(i):
            if n == "salt_and_pepper":
                assert 0.01 <= kw["amount"] <= 0.06 and 0.4 <= kw["salt_vs_pepper"] <= 0.6
            if n == "adjust_brightness":
                assert 0.5 <= kw["brightness_factor"] <= 0.6


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_multiplicative_noise_one_multiplier_per_channel(dtype):
    """per_channel without elementwise: channel c of sample i times its own m ~ U(multiplier), albumentations' formula
    (float64 oracle, truncated for uint8); one m for a single channel; 2 or 4 channels raise naming the option."""
    x = image(dtype, (64, 3, 6, 7), 6)
    aug = fastaug.MultiplicativeNoise((0.5, 1.5), per_channel=True, p=1.0)
    out, rec = fastaug.Compose([aug], seed=3)(x, indices=torch.arange(64), return_record=True)
    gains = torch.tensor([[kw["r_gain"], kw["g_gain"], kw["b_gain"]] for i in range(64) for n, kw in rec.calls(i)], dtype=torch.float64)
    assert gains.shape == (64, 3) and 0.5 <= float(gains.min()) and float(gains.max()) <= 1.5
    assert float((gains[:, 0] - gains[:, 1]).abs().mean()) > 0.1  # channels drawn apart
    bound = 255.0 if dtype == torch.uint8 else 1.0
    want = (x.double() * gains.view(64, 3, 1, 1)).clamp(0, bound)
    want = want.floor().to(torch.uint8) if dtype == torch.uint8 else want.float()
    torch.testing.assert_close(out, want, atol=0 if dtype == torch.uint8 else 1e-6, rtol=0)
    gray = fastaug.Compose([aug], seed=3)(x[:, :1], indices=torch.arange(64), return_record=True)[1]
    assert {n for i in range(64) for n, _ in gray.calls(i)} == {"adjust_brightness"}
    with pytest.raises(ValueError, match="MultiplicativeNoise"):
        fastaug.Compose([aug])(x[:, :2])


def test_gradients_to_image_and_drop_value():
    x = image(torch.float32, (2, 3, 9, 10), 5)
    grads = []
    for backend in ("torch", "numba"):
        xx = x.clone().requires_grad_(True)
        v = torch.tensor([0.2, 0.4], requires_grad=True)
        y = F.pixel_dropout(F.adjust_brightness(xx, 1.1, backend=backend), 0.3, True, v, backend=backend)
        y = F.multiplicative_noise(y, 0.9, 1.1, backend=backend)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(0)))
        grads.append((xx.grad, v.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert float(grads[0][1].abs().min()) > 0


@pytest.mark.parametrize("call,exc,name", [
    (lambda x: F.pixel_dropout(x, 1.5), ValueError, "dropout_prob"),
    (lambda x: F.pixel_dropout(x, 0.1, 1), TypeError, "per_channel"),
    (lambda x: F.pixel_dropout(x, 0.1, False, 2.0), ValueError, "drop_value"),
    (lambda x: F.salt_and_pepper(x, -0.1), ValueError, "amount"),
    (lambda x: F.salt_and_pepper(x, 0.1, float("nan")), ValueError, "salt_vs_pepper"),
    (lambda x: F.multiplicative_noise(x, 1.2, 0.8), ValueError, "low"),
    (lambda x: F.multiplicative_noise(x, -1.0, 0.8), ValueError, "low"),
    (lambda x: F.salt_and_pepper(x, 0.1, epoch=-2), ValueError, "epoch"),
])  # fmt: skip
def test_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call(torch.rand(3, 3, 8, 8))


@pytest.mark.parametrize("make", [
    lambda: fastaug.PixelDropout(drop_value=float("nan")), lambda: fastaug.PixelDropout(drop_value=(1, float("nan"), 3)),
    lambda: fastaug.PixelDropout(drop_value=()), lambda: fastaug.PixelDropout(drop_value=(1, -2)),
    lambda: fastaug.PixelDropout(drop_value=(1, True)), lambda: fastaug.PixelDropout(drop_value="a"),
    lambda: fastaug.PixelDropout(mask_drop_value=(0, 1)), lambda: fastaug.PixelDropout(mask_drop_value=float("nan")),
    lambda: fastaug.PixelDropout(mask_drop_value=True), lambda: fastaug.PixelDropout(dropout_prob=2.0),
    lambda: fastaug.SaltAndPepper(amount=(0.1, 1.5)), lambda: fastaug.MultiplicativeNoise(per_channel=1),
    lambda: fastaug.MultiplicativeNoise(multiplier=(1.2, 0.8)),
])  # fmt: skip
def test_transform_bad_input(make):
    with pytest.raises((ValueError, TypeError)):
        make()


def test_record_calls_replay_the_random_ops_through_functional():
    """Record.calls lists each random op with its key and flags: applying the listed calls one by one reproduces."""
    x = image(torch.float32, (3, 3, 9, 8), 6)
    aug = fastaug.Compose([fastaug.PixelDropout(0.3, per_channel=True, p=1), fastaug.GaussianNoise(0, 0.1),
                           fastaug.SaltAndPepper(p=1), fastaug.MultiplicativeNoise(elementwise=True, per_channel=True, p=1)],
                          seed=1)  # fmt: skip
    out, rec = aug(x, indices=torch.tensor([4, 8, 15]), epoch=2, return_record=True)
    for i in range(3):
        y = x[i : i + 1]
        for name, kw in rec.calls(i):
            assert isinstance(kw["key"], int) and 0 <= kw["key"] < 2**32
            y = getattr(F, name)(y, **kw)
        assert torch.equal(y[0], out[i])


def test_seed_may_be_a_device_tensor():
    """A 0-dim seed tensor on the device is hashed there (no host read: meta tensors have no values)."""
    keys = rng.key(torch.tensor(5, device="meta"), torch.tensor(1, device="meta"), torch.arange(3, device="meta"), 7)
    assert keys.shape == (3,) and keys.device.type == "meta"
    assert torch.equal(rng.key(torch.tensor(5), 1, torch.arange(3), 7), rng.key(5, 1, torch.arange(3), 7))


def test_chained_functional_random_ops_draw_independently():
    """With the default seed, epoch and indices, each random op keys its draws by its own slot."""
    half = torch.full((1, 1, 32, 32), 0.5)
    a = F.multiplicative_noise(half, 0.0, 1.0) < 0.25
    b = F.pixel_dropout(half, 0.5) == 0
    assert not torch.equal(a, b)


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_mask_drop_value_paints_the_pixels_the_image_drops(backend, per_channel):
    """Masks get ``mask_drop_value`` exactly where the image got its drop value (the same draws, after a flip): the
    shared draw in every mask channel, or per channel mask channel k where image channel k dropped."""
    b, h, w = 6, 13, 17
    x = torch.full((b, 3, h, w), 100, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(1, 6, (b, 2, h, w), generator=g)
    flip = fastaug.RandomHorizontalFlip(0.5)
    aug = fastaug.Compose([flip, fastaug.PixelDropout(0.3, per_channel, drop_value=7, mask_drop_value=9, p=0.7)], seed=4)
    out = aug(x, mask=mask, backend=backend)
    flipped = fastaug.Compose([flip], seed=4)(x, mask=mask, backend=backend)["mask"]
    dropped = out["image"] == 7  # [B,3,H,W]
    want = dropped[:, :2] if per_channel else dropped[:, :1].expand(b, 2, h, w)
    assert 0 < int(dropped.any((1, 2, 3)).sum()) < b  # some samples not applied (p=0.7)
    assert torch.equal(out["mask"], torch.where(want, 9, flipped))
    if not per_channel:
        assert torch.equal(dropped, dropped[:, :1].expand_as(dropped))
    single = aug(x, mask=mask[:, 0].float(), backend=backend)["mask"]  # a [B,H,W] float mask: channel 0's draw
    assert torch.equal(single, torch.where(want[:, 0], 9.0, flipped[:, 0].float()))
    plain = fastaug.Compose([flip, fastaug.PixelDropout(0.3, per_channel, drop_value=7, p=0.7)], seed=4)
    assert torch.equal(plain(x, mask=mask, backend=backend)["mask"], flipped)  # None: masks untouched


def _oracle(x: torch.Tensor, p: torch.Tensor, per_channel: bool, values: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """albumentations' ``np.where(drop_mask, drop_values, image)`` in float64 on the counter-based uniforms; ``values``
    [B,C] in the image's units (uint8: truncated, as albumentations' cast)."""
    b, c, h, w = x.shape
    u = counter.pixel_uniform(keys, c if per_channel else 1, h, w, torch.float64)
    v = torch.floor(values.double()) if x.dtype == torch.uint8 else values.double()
    return torch.where(u < p.double().view(b, 1, 1, 1), v.view(b, c, 1, 1), x.double()).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("c", [3, 5])
def test_pixel_dropout_one_value_per_channel(dtype, per_channel, c):
    """A sequence of C values (any channel count) or a [B,C] tensor: channel k of a dropped pixel takes value k (uint8
    truncates); the float64 oracle; numba equals the reference bit for bit."""
    x = image(dtype, (3, c, 19, 23), 8)
    p = torch.tensor([0.2, 0.5, 0.0])
    bound = 255.0 if dtype == torch.uint8 else 1.0
    seq = [bound * (k + 0.7) / (c + 1) for k in range(c)]
    per_sample = torch.rand(3, c, generator=torch.Generator().manual_seed(c), dtype=torch.float64) * bound
    for value, values in ((seq, torch.tensor(seq, dtype=torch.float64).expand(3, c)), (per_sample, per_sample)):
        want = _oracle(x, p, per_channel, values, KEYS)
        for backend in ("torch", "numba"):
            got = F.pixel_dropout(x, p, per_channel, value, key=KEYS, backend=backend)
            assert torch.equal(got, want), backend
    dropped = want != x
    assert dropped[1].any() and not dropped[2].any()
    if not per_channel:  # a shared draw drops every channel of a pixel (where its value differs from the pixel's)
        hit = counter.pixel_uniform(KEYS, 1, 19, 23, torch.float64) < p.double().view(3, 1, 1, 1)
        assert torch.equal(dropped.any(1, keepdim=True) & ~hit, torch.zeros_like(hit))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_pixel_dropout_random_values(dtype):
    """``drop_value=None``: per sample one value per channel from the key (uint8 integers in 0..254, float [0, 1)),
    the oracle with those values; the transform draws per sample and its record replays through functional."""
    x = image(dtype, (64, 3, 6, 5), 9)
    u8 = dtype == torch.uint8
    keys = rng.key(1, 0, torch.arange(64), 0)
    values = F.random_drop_values(keys, 3, u8)
    assert values.shape == (64, 3) and float(values.min()) >= 0
    if u8:
        assert torch.equal(values, values.floor()) and float(values.max()) <= 254 and float(values.max()) >= 200
    else:
        assert float(values.max()) < 1 and float(values.max()) > 0.8
    assert float((values[:, 0] - values[:, 1]).abs().mean()) > 0.1 * (255 if u8 else 1)  # channels drawn apart
    got = F.pixel_dropout(x, 0.4, True, None, key=keys, backend="numba")
    assert torch.equal(got, _oracle(x, torch.full((64,), 0.4), True, values, keys))
    assert torch.equal(got, F.pixel_dropout(x, 0.4, True, None, key=keys, backend="torch"))

    aug = fastaug.Compose([fastaug.PixelDropout(0.5, drop_value=None, p=1.0)], seed=5)
    out, rec = aug(x, indices=torch.arange(64), return_record=True)
    listed = [rec.calls(i) for i in range(64)]
    assert all(len(calls) == 1 and calls[0][0] == "pixel_dropout" for calls in listed)
    drawn = torch.tensor([calls[0][1]["drop_value"] for calls in listed], dtype=torch.float64)
    assert drawn.shape == (64, 3) and len({tuple(v) for v in drawn.tolist()}) > 60  # per sample, not per call
    for i in (0, 7, 63):
        name, kw = listed[i][0]
        assert torch.equal(F.pixel_dropout(x[i : i + 1], **kw)[0], out[i])


def test_pixel_dropout_values_match_albumentations():
    """With every pixel dropped (dropout_prob 1) the result is the drop values alone: albumentations 2's PixelDropout
    (uint8 values cast, float values as given; a single-element sequence is one value)."""
    A = pytest.importorskip("albumentations")
    import numpy as np

    for dtype, value in ((torch.uint8, (10.7, 200.2, 3.0)), (torch.float32, (0.1, 0.5, 0.9)), (torch.uint8, (42,))):
        x = image(dtype, (1, 3, 5, 4), 10)
        t = A.PixelDropout(dropout_prob=1.0, per_channel=True, drop_value=value, p=1.0)
        want = torch.from_numpy(np.ascontiguousarray(t(image=x[0].permute(1, 2, 0).numpy())["image"])).permute(2, 0, 1)
        got = fastaug.Compose([fastaug.PixelDropout(1.0, per_channel=True, drop_value=value, p=1.0)])(x)
        assert torch.equal(got[0], want), value
    # drop_value=None: the ranges albumentations draws from (uint8 integers(0, 255) = 0..254, float uniform [0, 1))
    random = A.PixelDropout(dropout_prob=1.0, per_channel=True, drop_value=None, p=1.0)
    random.set_random_seed(0)
    for dtype in (torch.uint8, torch.float32):
        u8 = dtype == torch.uint8
        img = np.zeros((4, 4, 3), np.uint8 if u8 else np.float32)
        seen = np.stack([random(image=img)["image"][0, 0] for _ in range(200)])
        assert seen.min() >= 0 and (seen.max() <= 254 if u8 else seen.max() < 1)
        # fastaug's values: the same ranges, one value per channel over all of a sample's pixels, per sample (not per
        # call: samples differ), a sample's values replayed from (seed, epoch, index) whatever batch it is in
        aug = fastaug.Compose([fastaug.PixelDropout(1.0, per_channel=True, drop_value=None, p=1.0)], seed=3)
        x = image(dtype, (64, 3, 5, 4), 11)
        got = aug(x, indices=torch.arange(64))
        values = got[:, :, 0, 0].double()
        assert torch.equal(got, got[:, :, :1, :1].expand_as(got))
        assert float(values.min()) >= 0 and (float(values.max()) <= 254 if u8 else float(values.max()) < 1)
        assert float(values.max()) > (200 if u8 else 0.8) and float(values.min()) < (50 if u8 else 0.2)
        assert len({tuple(v) for v in values.tolist()}) == 64 and (values[:, 0] != values[:, 1]).any()
        assert torch.equal(aug(x[5:9], indices=torch.arange(5, 9)), got[5:9])  # per-sample replay
        assert not torch.equal(aug(x[:4], indices=torch.arange(4), epoch=1), got[:4])  # another epoch: other values


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_pixel_dropout_per_channel_values_in_a_pipeline(backend):
    """After a flip and before a brightness (a factor 1.5 on every sample, in the same stage): replay, masks painted at
    the image's dropped pixels, Record.calls listing the op once with its values (applying the listing one call at a
    time reproduces each sample)."""
    b, h, w = 8, 11, 13
    x = torch.full((b, 3, h, w), 100, dtype=torch.uint8)
    mask = torch.randint(1, 6, (b, 2, h, w), generator=torch.Generator().manual_seed(1))
    flip = fastaug.RandomHorizontalFlip(0.5)
    aug = fastaug.Compose([flip, fastaug.PixelDropout(0.3, True, drop_value=(7, 8, 9), mask_drop_value=20, p=0.7),
                           fastaug.ColorJitter(brightness=(1.5, 1.5))], seed=4)  # fmt: skip
    out, rec = aug(x, mask=mask, backend=backend, return_record=True)
    img = out["image"]
    assert torch.equal(rec.replay(x, backend=backend), img)
    for k in range(3):  # uint8 brightness truncates: 100 -> 150, the drop value 7 + k -> floor(1.5 * (7 + k))
        assert set(img[:, k].unique().tolist()) == {150, (3 * (7 + k)) // 2}
    flipped = fastaug.Compose([flip], seed=4)(x, mask=mask, backend=backend)["mask"]
    assert torch.equal(out["mask"], torch.where(img[:, :2] != 150, 20, flipped))
    for i in range(b):
        y = x[i : i + 1]
        listed = rec.calls(i)
        assert [n for n, _ in listed if n == "pixel_dropout"] in ([], ["pixel_dropout"])
        assert [n for n, _ in listed if n not in ("pixel_dropout", "horizontal_flip")] == ["adjust_brightness"]
        for name, kw in listed:
            if name == "pixel_dropout":
                assert kw["drop_value"] == [7.0, 8.0, 9.0] and kw["per_channel"] is True
            y = getattr(F, name)(y, **kw)
        assert torch.equal(y[0], img[i])


def test_pixel_dropout_per_channel_value_gradients():
    """Gradients to the image (kept pixels) and to each channel's drop value (the dropped pixels of that channel)."""
    x = image(torch.float32, (2, 3, 9, 10), 5)
    grads = []
    for backend in ("torch", "numba"):
        xx = x.clone().requires_grad_(True)
        v = torch.tensor([[0.2, 0.4, 0.6], [0.1, 0.3, 0.9]], requires_grad=True)
        y = F.pixel_dropout(F.adjust_brightness(xx, 1.1, backend=backend), 0.3, False, v, seed=2, backend=backend)
        gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))
        y.backward(gy)
        grads.append((xx.grad, v.grad))
        hit = y.detach() == v.detach().view(2, 3, 1, 1)
        torch.testing.assert_close(v.grad, (gy * hit).sum((2, 3)), atol=1e-5, rtol=1e-5)
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_dropout_mode_decodes_what_it_encodes():
    """catalogue.decode_dropout_mode undoes dropout_mode on floats and on tensors (the form the Plan carries)."""
    from fastaug.ops.catalogue import decode_dropout_mode, dropout_mode

    cases = [(pc, ch) for pc in (False, True) for ch in (-1, 0, 1, 2, 7)]
    for pc, ch in cases:
        got_pc, got_ch = decode_dropout_mode(dropout_mode(pc, ch))
        assert got_pc is pc and got_ch == ch
    modes = torch.tensor([dropout_mode(pc, ch) for pc, ch in cases], dtype=torch.float64)
    got_pc, got_ch = decode_dropout_mode(modes)
    assert got_pc.tolist() == [pc for pc, _ in cases] and got_ch.tolist() == [ch for _, ch in cases]


@pytest.mark.parametrize("call,exc,name", [
    (lambda x: F.pixel_dropout(x, 0.1, False, [0.1, 0.2]), ValueError, "drop_value"),
    (lambda x: F.pixel_dropout(x, 0.1, False, [0.1, 0.2, 0.3, 0.4]), ValueError, "drop_value"),
    (lambda x: F.pixel_dropout(x, 0.1, False, [0.1, float("nan"), 0.3]), ValueError, "drop_value"),
    (lambda x: F.pixel_dropout(x, 0.1, False, float("nan")), ValueError, "drop_value"),
    (lambda x: F.pixel_dropout(x, 0.1, False, [0.1, 1.5, 0.3]), ValueError, "drop_value"),
    (lambda x: F.pixel_dropout(x, 0.1, False, torch.zeros(3, 2)), ValueError, "drop_value"),
    (lambda x: F.pixel_dropout(x, 0.1, False, [0.1, "a", 0.3]), TypeError, "drop_value"),
    (lambda x: F.pixel_dropout(x, 0.1, False, [0.1, True, 0.3]), TypeError, "drop_value"),
])  # fmt: skip
def test_drop_value_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call(torch.rand(3, 3, 8, 8))


def test_transform_drop_value_checked_against_the_image():
    with pytest.raises(ValueError, match="drop_value"):
        fastaug.Compose([fastaug.PixelDropout(drop_value=(1, 2, 3), p=1.0)])(torch.rand(2, 4, 5, 5))
    with pytest.raises(ValueError, match="drop_value"):
        fastaug.Compose([fastaug.PixelDropout(drop_value=(0.1, 2.0, 0.1), p=1.0)])(torch.rand(2, 3, 5, 5))
