"""CoarseDropout: albumentations' v2 semantics, drawn per sample, painted through RectCall."""

import math

import numpy as np
import pytest
import torch

import fastaug
import fastaug.functional as F
from fastaug import rng
from fastaug.transforms import SLOTS_PER_TRANSFORM

A = pytest.importorskip("albumentations")
from albumentations.augmentations.dropout.functional import cutout  # noqa: E402

SEED = 11


def batch(dtype, c, b=6, h=19, w=27, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=g)
    return torch.rand(b, c, h, w, generator=g, dtype=torch.float64).to(dtype)


def oracle_holes(t: fastaug.CoarseDropout, b: int, h: int, w: int, pos: int = 0, seed: int = SEED, epoch: int = 0):
    """The documented draws, in float64 and plain Python per sample: (applied, [holes (x0, y0, x1, y1)])."""
    idx = torch.arange(b)
    slot = (pos + 1) * SLOTS_PER_TRANSFORM

    def u(offset, n):
        return rng.uniform(seed, epoch, idx, slot + offset, n).tolist()

    coin, un, uh, uw, uy, ux = u(0, 1), u(1, 1), *(u(k, t.num_holes_range[1]) for k in (2, 3, 4, 5))
    lo, hi = t.num_holes_range
    (h0, h1), (w0, w1) = t.hole_height_range, t.hole_width_range
    out = []
    for i in range(b):
        n = min(lo + math.floor(un[i][0] * (hi - lo + 1)), hi)
        holes = []
        for r in range(n):
            if h1 >= 1:  # pixels (albumentations: the height range alone decides)
                a, z = int(h0), int(min(h1, h))
                hh = min(a + math.floor(uh[i][r] * (z - a + 1)), z)
                a, z = int(w0), int(min(w1, w))
                ww = min(a + math.floor(uw[i][r] * (z - a + 1)), z)
            else:
                hh = int(h * (h0 + uh[i][r] * (h1 - h0)))
                ww = int(w * (w0 + uw[i][r] * (w1 - w0)))
            y0 = math.floor(uy[i][r] * (h - hh + 1))
            x0 = math.floor(ux[i][r] * (w - ww + 1))
            holes.append((x0, y0, x0 + ww, y0 + hh))
        out.append((coin[i][0] < t.p, holes))
    return out


def albumentations_cutout(x: torch.Tensor, draws, fill) -> torch.Tensor:
    """albumentations' own cutout per sample (HWC numpy) with the oracle's holes."""
    out = []
    for i, (applied, holes) in enumerate(draws):
        img = x[i].permute(1, 2, 0).numpy()
        if x.shape[1] == 1:
            img = img[..., 0]
        if applied and holes:
            img = cutout(img, np.array(holes, dtype=np.int64), fill, np.random.default_rng(0))
        t = torch.from_numpy(np.ascontiguousarray(img))
        out.append(t.unsqueeze(0) if x.shape[1] == 1 else t.permute(2, 0, 1))
    return torch.stack(out)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize(
    "ranges",
    [((1, 2), (0.1, 0.2), (0.1, 0.2)), ((2, 5), (0.2, 0.6), (0.05, 0.5)), ((1, 4), (3, 9), (2, 30)), ((3, 3), (1, 1), (0, 5))],
)
def test_matches_the_oracle_and_albumentations_cutout(dtype, c, ranges):
    fill = {torch.uint8: [127.9, 3.2, 255][:c] if c == 3 else 127.9, torch.float32: [0.25, 0.5, 0.75][:c] if c == 3 else 0.4}[dtype]
    t = fastaug.CoarseDropout(*ranges, fill=fill, p=0.8)
    x = batch(dtype, c)
    out, record = fastaug.Compose([t], seed=SEED, backend="torch")(x, return_record=True)
    draws = oracle_holes(t, x.shape[0], x.shape[2], x.shape[3])
    assert torch.equal(out, albumentations_cutout(x, draws, fill))
    for i, (applied, holes) in enumerate(draws):  # the listing names the same holes (0-sized ones paint nothing)
        listed = [(kw["j"], kw["i"], kw["j"] + kw["w"], kw["i"] + kw["h"]) for _, kw in record.calls(i)]
        assert listed == ([hole for hole in holes if hole[2] > hole[0] and hole[3] > hole[1]] if applied else [])


def test_uint8_fill_truncates_and_follows_a_later_to_float():
    """uint8 fills truncate like np.array(fill, dtype=uint8); a later ToDtype(float) sees the truncated value."""
    x = batch(torch.uint8, 3)
    t = fastaug.CoarseDropout((2, 2), (4, 4), (5, 5), fill=[10.9, 99.5, 200.99], p=1.0)
    y = fastaug.Compose([t], seed=SEED, backend="torch")(x)
    z = fastaug.Compose([t, fastaug.ToDtype(torch.float32, scale=True)], seed=SEED, backend="torch")(x)
    holes = y != x
    assert set(y[:, 0][holes[:, 0]].tolist()) <= {10} and set(y[:, 2][holes[:, 2]].tolist()) <= {200}
    assert torch.allclose(z, y.float() / 255, atol=1e-6)
    for fill, want in ((300, 255), (-5, 0)):  # out of uint8's range: saturates (documented difference)
        y = fastaug.Compose([fastaug.CoarseDropout((2, 2), (4, 4), (5, 5), fill=fill, p=1.0)], seed=SEED, backend="torch")(x)
        assert (y != x).any() and set(y[y != x].tolist()) == {want}


def test_random_uniform_one_colour_per_hole():
    for dtype in (torch.uint8, torch.float32):
        x = torch.zeros(64, 3, 16, 16, dtype=dtype)
        t = fastaug.CoarseDropout((1, 3), (4, 8), (4, 8), fill="random_uniform", p=1.0)
        y, record = fastaug.Compose([t], seed=SEED, backend="torch")(x, return_record=True)
        colours = []
        for i in range(x.shape[0]):
            calls = record.calls(i)
            for k, (_, kw) in enumerate(calls):
                covered_later = torch.zeros(16, 16, dtype=torch.bool)
                for _, later in calls[k + 1 :]:
                    covered_later[later["i"] : later["i"] + later["h"], later["j"] : later["j"] + later["w"]] = True
                region = y[i, :, kw["i"] : kw["i"] + kw["h"], kw["j"] : kw["j"] + kw["w"]]
                visible = ~covered_later[kw["i"] : kw["i"] + kw["h"], kw["j"] : kw["j"] + kw["w"]]
                v = torch.tensor(kw["v"], dtype=torch.float64)
                assert torch.equal(region[:, visible].double(), v.view(3, 1).expand(3, int(visible.sum())))
                colours.append(v)
        v = torch.stack(colours)
        if dtype == torch.uint8:
            assert torch.equal(v, v.floor()) and v.min() >= 0 and v.max() <= 255 and v.max() > 200 and v.min() < 50
        else:
            assert v.min() >= 0 and v.max() < 1 and v.max() > 0.8 and v.min() < 0.2
        assert v.unique(dim=0).shape[0] > 0.9 * v.shape[0]  # a colour per hole (and per channel)


def draw(t, b, h=40, w=50, seed=SEED):
    x = torch.empty(b, 3, h, w, dtype=torch.uint8)
    (call,) = fastaug.Compose([t], seed=seed).draw(x, torch.arange(b), 0)
    return call


def test_per_sample_draws_cover_the_documented_ranges():
    b, h, w = 4000, 40, 50
    call = draw(fastaug.CoarseDropout((1, 4), (0.1, 0.3), (0.2, 0.5), p=0.5), b, h, w)
    n = call.active.sum(1)
    counts = torch.bincount(n, minlength=5)
    assert counts[0] == 0 and all(abs(int(k) - b / 4) < 0.1 * b for k in counts[1:])  # 1..4, inclusive, uniform
    r = call.rects.long()
    hh, ww = (r[..., 3] - r[..., 1])[call.active], (r[..., 2] - r[..., 0])[call.active]
    assert set(hh.tolist()) == set(range(int(h * 0.1), int(h * 0.3)))  # int(H * U(0.1, 0.3)): 4..11
    assert set(ww.tolist()) == set(range(int(w * 0.2), int(w * 0.5)))
    assert (r[..., 0] >= 0).all() and (r[..., 1] >= 0).all() and (r[..., 2] <= w).all() and (r[..., 3] <= h).all()
    x0 = r[..., 0][call.active & (r[..., 2] - r[..., 0] == 10)]
    assert set(x0.tolist()) == set(range(0, w - 10 + 1))  # every position fully inside the image
    assert abs(call.applied.float().mean() - 0.5) < 0.03
    # samples differ: each one draws its own holes
    assert torch.unique(r[:, 0], dim=0).shape[0] > 0.9 * b

    call = draw(fastaug.CoarseDropout((2, 3), (3, 100), (5, 7), p=1.0), b, h, w)  # pixels, clipped to H
    r = call.rects.long()
    hh, ww = (r[..., 3] - r[..., 1])[call.active], (r[..., 2] - r[..., 0])[call.active]
    assert set(hh.tolist()) == set(range(3, h + 1)) and set(ww.tolist()) == {5, 6, 7}
    assert set(call.active.sum(1).tolist()) == {2, 3}


def _albumentations_sizes(t, h, w, n=3000):
    """The hole sizes albumentations' own CoarseDropout draws on an H x W image."""
    t.set_random_seed(0)
    img = np.zeros((h, w, 3), np.uint8)
    hs, ws = set(), set()
    for _ in range(n // 10):
        holes = t.get_params_dependent_on_data({"shape": img.shape}, {"image": img})["holes"]
        hs.update((holes[:, 3] - holes[:, 1]).tolist())
        ws.update((holes[:, 2] - holes[:, 0]).tolist())
    return hs, ws


@pytest.mark.parametrize(
    "hr, wr",
    [((0.1, 0.3), (0.2, 0.5)), ((3, 9), (2, 30)), ((8, 16), (0.1, 0.5)), ((0.5, 1.0), (0.5, 1.0)), ((0.05, 0.9), (0.0, 1.0))],
)
def test_hole_sizes_follow_albumentations_rule_and_quirk(hr, wr):
    """The same achievable hole sizes as albumentations' own draws, quirk included: (8, 16) with (0.1, 0.5)
    gives width 0 (no hole at all), (0.5, 1.0) means 0..1 pixels."""
    h, w = 37, 29
    ours = draw(fastaug.CoarseDropout((10, 10), hr, wr, p=1.0), 600, h, w)
    r = ours.rects.long()
    got_h, got_w = set((r[..., 3] - r[..., 1]).flatten().tolist()), set((r[..., 2] - r[..., 0]).flatten().tolist())
    want_h, want_w = _albumentations_sizes(A.CoarseDropout((10, 10), hr, wr, p=1.0), h, w)
    assert got_h == want_h and got_w == want_w
    if hr == (8, 16):
        x = batch(torch.uint8, 3)
        assert torch.equal(fastaug.Compose([fastaug.CoarseDropout((3, 3), hr, wr, p=1.0)], backend="torch")(x), x)


def test_record_replays_and_lists_erase_calls():
    x = batch(torch.uint8, 3, b=5)
    aug = fastaug.Compose(
        [fastaug.ColorJitter(0.3, 0.3), fastaug.CoarseDropout((1, 3), (0.2, 0.4), (0.2, 0.4), fill="random_uniform", p=0.7)],
        seed=SEED,
        backend="torch",
    )
    y, record = aug(x, return_record=True)
    assert torch.equal(record.replay(x, backend="torch"), y)
    assert torch.equal(aug(x, backend="torch"), y)  # a pure function of (seed, epoch, index)
    for i in range(5):
        img = x[i]
        for name, kwargs in record.calls(i):
            img = getattr(F, name)(img, **kwargs, backend="torch")
        assert (img.int() - y[i].int()).abs().max() <= 1


def test_mask_gets_fill_mask_and_holes_flag_keypoints():
    b, h, w = 8, 24, 30
    x = torch.ones(b, 3, h, w)
    mask = torch.ones(b, h, w, dtype=torch.int64)
    box, kp = torch.tensor([[2.0, 3.0, 20.0, 15.0]]), torch.tensor([[5.5, 6.5]])
    t = fastaug.CoarseDropout((1, 3), (0.2, 0.5), (0.2, 0.5), fill=0.0, fill_mask=7, p=1.0)
    out = fastaug.Compose([t], seed=SEED, backend="torch")(x, mask=mask, bboxes=[box] * b, labels=[torch.tensor([1])] * b,
                                                           keypoints=[kp] * b)  # fmt: skip
    holes = out["image"][:, 0] == 0
    assert holes.any(dim=(1, 2)).all()
    assert torch.equal(out["mask"] == 7, holes) and torch.equal(out["mask"][~holes], mask[~holes])
    for i in range(b):  # a box partly visible stays by default; keypoints stay, flagged (test_dropout_targets.py)
        assert out["labels"][i].tolist() == [1]
        assert torch.equal(out["keypoints"][i], kp) and out["keypoints_visible"][i].tolist() == [not bool(holes[i, 6, 5])]
    kept = fastaug.Compose([fastaug.CoarseDropout((1, 3), (0.2, 0.5), (0.2, 0.5), p=1.0)], seed=SEED, backend="torch")
    assert torch.equal(kept(x, mask=mask)["mask"], mask)  # fill_mask=None: masks untouched


def test_per_sample_fill_tensor():
    x = batch(torch.float32, 3, b=4)
    fill = torch.rand(4, 3)
    y = fastaug.Compose([fastaug.CoarseDropout((2, 2), (5, 5), (5, 5), fill=fill, p=1.0)], seed=SEED, backend="torch")(x)
    for i in range(4):
        changed = (y[i] != x[i]).any(0)
        assert changed.any()
        assert torch.equal(y[i][:, changed], fill[i].view(3, 1).expand(3, int(changed.sum())))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("c", [1, 3])
def test_backends_torch_and_numba_equal(dtype, c):
    x = batch(dtype, c, b=5)
    for fill in (0.5 if dtype != torch.uint8 else 100, "random_uniform"):
        aug = fastaug.Compose([fastaug.CoarseDropout((1, 4), (0.1, 0.5), (0.1, 0.5), fill=fill, p=0.8)], seed=SEED)
        assert torch.equal(aug(x, backend="torch"), aug(x, backend="numba"))


def test_draws_never_read_values():
    """Drawing and compiling on the meta device: the parameter path never syncs with the host."""
    from fastaug.compiler import compile_plan

    aug = fastaug.Compose([fastaug.CoarseDropout((1, 3), (4, 9), (3, 6), fill="random_uniform", fill_mask=1, p=0.5)])
    x = torch.empty(4, 3, 20, 24, dtype=torch.uint8, device="meta")
    plan = compile_plan(aug.draw(x, torch.arange(4, device="meta"), 0), tuple(x.shape), x.dtype, x.device)
    assert plan.epilogue.rects.shape == (4, 3, 4) and plan.epilogue.rects.device.type == "meta"


def test_bad_arguments_raise_naming_them():
    C = fastaug.CoarseDropout
    for kwargs, exc, name in [
        ({"num_holes_range": (0, 2)}, ValueError, "num_holes_range"),
        ({"num_holes_range": (3, 2)}, ValueError, "num_holes_range"),
        ({"num_holes_range": (1.0, 2)}, TypeError, "num_holes_range"),
        ({"num_holes_range": 2}, TypeError, "num_holes_range"),
        ({"hole_height_range": (-0.1, 0.2)}, ValueError, "hole_height_range"),
        ({"hole_height_range": (0.3, 0.2)}, ValueError, "hole_height_range"),
        ({"hole_height_range": (0.1, float("nan"))}, ValueError, "hole_height_range"),
        ({"hole_width_range": "ab"}, TypeError, "hole_width_range"),
        ({"hole_width_range": (0.1, 4)}, ValueError, "hole_width_range"),  # pixels next to fraction heights
        ({"fill": "random"}, ValueError, "not supported yet"),
        ({"fill": "inpaint_telea"}, ValueError, "not supported yet"),
        ({"fill": "inpaint_ns"}, ValueError, "not supported yet"),
        ({"fill": "noise"}, ValueError, "fill"),
        ({"fill": None}, TypeError, "fill"),
        ({"fill": float("inf")}, ValueError, "fill"),
        ({"fill": [0, "a", 1]}, TypeError, "fill"),
        ({"fill_mask": (1, 2)}, TypeError, "fill_mask"),
        ({"fill_mask": "x"}, TypeError, "fill_mask"),
        ({"p": 1.5}, ValueError, "p"),
    ]:
        with pytest.raises(exc, match=name):
            C(**kwargs)
    x = batch(torch.uint8, 3)
    with pytest.raises(ValueError, match="fill"):  # 2 values for 3 channels
        fastaug.Compose([C(fill=[1, 2], p=1.0)])(x)
    with pytest.raises(ValueError, match="hole_height_range"):  # more pixels than the image has
        fastaug.Compose([C(hole_height_range=(40, 50), p=1.0)])(x)
    with pytest.raises(ValueError, match="hole_width_range"):
        fastaug.Compose([C(hole_height_range=(2, 3), hole_width_range=(28, 30), p=1.0)])(x)
