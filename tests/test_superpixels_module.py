"""fastaug.ops.superpixels: batched SLIC labels and albumentations' Superpixels (segment means).

albumentations' own ``slic`` is the oracle of the segmentation (same features, same distance formula, same
compactness scale); the agreement is measured on grids both implementations lay out alike (H, W multiples of the
grid interval S = sqrt(H W / n)). Agreement metrics are written here in numpy: the adjusted Rand index and the
boundary F1 score (boundary pixels within 1 pixel of the other segmentation's boundary)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

from fastaug.ops.counter import INV24, mix
from fastaug.ops.superpixels import slic, superpixels


# --- metrics and images (numpy) ---------------------------------------------------------------------------------------
def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """The adjusted Rand index of two labelings (1: identical partitions, ~0: chance)."""
    a = np.unique(a.ravel(), return_inverse=True)[1]
    b = np.unique(b.ravel(), return_inverse=True)[1]
    cont = np.bincount(a * (b.max() + 1) + b).astype(np.float64)

    def pairs(v):
        return float((v * (v - 1) / 2).sum())

    sa, sb = pairs(np.bincount(a).astype(np.float64)), pairs(np.bincount(b).astype(np.float64))
    expected = sa * sb / pairs(np.array([a.size], np.float64))
    return (pairs(cont) - expected) / (0.5 * (sa + sb) - expected)


def boundaries(lab: np.ndarray) -> np.ndarray:
    e = np.zeros(lab.shape, bool)
    e[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    e[1:, :] |= lab[1:, :] != lab[:-1, :]
    return e


def dilate(m: np.ndarray, r: int) -> np.ndarray:
    p = np.pad(m, r)
    h, w = m.shape
    out = np.zeros_like(m)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= p[dy : dy + h, dx : dx + w]
    return out


def boundary_f1(a: np.ndarray, b: np.ndarray, tol: int = 1) -> float:
    ea, eb = boundaries(a), boundaries(b)
    recall = (ea & dilate(eb, tol)).sum() / max(ea.sum(), 1)
    precision = (eb & dilate(ea, tol)).sum() / max(eb.sum(), 1)
    return float(2 * recall * precision / max(recall + precision, 1e-12))


def impurity(lab: np.ndarray, regions: np.ndarray) -> float:
    """Fraction of pixels outside their segment's majority region (0: no segment crosses a region edge)."""
    bad = 0
    for s in np.unique(lab):
        m = lab == s
        bad += m.sum() - np.bincount(regions[m]).max()
    return bad / lab.size


@functools.cache
def _photo(name: str) -> torch.Tensor:
    from sklearn.datasets import load_sample_image

    return torch.from_numpy(load_sample_image(name).copy()).permute(2, 0, 1)[None].double()


def sample_image(name: str, w: int, h: int) -> np.ndarray:
    """scikit-learn's sample photo (china.jpg, flower.jpg: 427 x 640), area-downscaled to h x w x 3 uint8."""
    big = _photo(name)
    small = torch.nn.functional.interpolate(big, size=(h, w), mode="area")
    return small[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def blocks(h: int = 96, w: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Flat coloured rectangles (a 4 x 4 layout, edges off any grid), h x w x 3 uint8, and the region map."""
    gy = np.searchsorted(np.array([22, 51, 70]), np.arange(h), side="right")
    gx = np.searchsorted(np.array([19, 53, 90]), np.arange(w), side="right")
    regions = gy[:, None] * 4 + gx[None, :]
    colours = np.array([[(i * 5 + 1) % 2, (i * 3 // 2) % 2, ((i + 1) // 3) % 2] for i in range(16)]) * 255
    return colours[regions].astype(np.uint8), regions


def to_batch(*imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255


def seg_means(img: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Per-pixel float64 mean of its segment, per channel: img [C,H,W], lab [H,W]."""
    out = np.empty(img.shape, np.float64)
    for s in np.unique(lab):
        m = lab == s
        out[:, m] = img[:, m].astype(np.float64).mean(1, keepdims=True)
    return out


# --- slic --------------------------------------------------------------------------------------------------------------
def test_labels_shape_dtype_range_deterministic():
    x = torch.rand(3, 3, 40, 56)
    n = torch.tensor([1, 12, 30])
    lab = slic(x, n, 30)
    assert lab.shape == (3, 40, 56) and lab.dtype == torch.int64
    assert int(lab.min()) >= 0 and int(lab.max()) < 30
    assert bool((lab[0] == 0).all())  # one segment
    for b in range(3):
        assert len(torch.unique(lab[b])) <= int(n[b])
    assert torch.equal(lab, slic(x, n, 30))
    one = slic(torch.rand(2, 1, 17, 9), torch.tensor([4, 9]), 9)  # one channel, odd sizes
    assert one.shape == (2, 17, 9) and int(one.max()) < 9


def test_batch_independence():
    a, b = sample_image("china.jpg", 90, 60), sample_image("flower.jpg", 90, 60)
    x = to_batch(a, b, a[::-1].copy())
    n = torch.tensor([40, 100, 7])
    batched = slic(x, n, 128)
    for i in range(3):
        assert torch.equal(batched[i], slic(x[i : i + 1], n[i : i + 1], 128)[0])
        assert torch.equal(batched[i], slic(x[i : i + 1], n[i : i + 1], 300)[0])  # padding to max_segments changes nothing
    scaled = x * torch.tensor([255.0, 1.0, 7.0]).view(3, 1, 1, 1)  # any scale: features are over the sample's max
    assert float((slic(scaled, n, 128) == batched).double().mean()) > 0.999  # equal up to rounding near ties


def test_n_segments_honoured():
    img = sample_image("china.jpg", 180, 120)
    n = torch.tensor([10, 40, 100, 250])
    lab = slic(to_batch(img, img, img, img), n, 250)
    for b, target in enumerate(n.tolist()):
        count = len(torch.unique(lab[b]))
        assert 0.6 * target <= count <= target, (target, count)


def test_rectangles_edges_respected():
    img, regions = blocks()
    x = to_batch(img)
    for compactness, n, limit in ((1.0, 48, 0.06), (1.0, 100, 0.05), (10.0, 48, 0.21), (10.0, 100, 0.12)):
        lab = slic(x, torch.tensor([n]), 128, compactness=compactness)[0].numpy()
        grid = slic(x, torch.tensor([n]), 128, iterations=0)[0].numpy()
        ours, base = impurity(lab, regions), impurity(grid, regions)
        # measured: compactness 1: 0.041 (n=48), 0.027 (n=100); albumentations' slic 0.037, 0.032; the initial grid 0.249, 0.124.
        # compactness 10 (colour weighs little at albumentations' scale): 0.180, 0.107; albumentations 0.178, 0.086.
        assert ours <= limit, (compactness, n, ours)
        assert ours < base, (compactness, n, ours, base)


@pytest.mark.parametrize("compactness", [10.0, 1.0])
def test_agreement_with_albumentations_slic(compactness):
    fp = pytest.importorskip("albumentations.augmentations.pixel.functional")
    aris, f1s, grid_f1s = [], [], []
    for name in ("china.jpg", "flower.jpg"):
        for (w, h), n in (((96, 64), 24), ((96, 64), 96), ((120, 80), 150), ((160, 96), 60)):
            img = sample_image(name, w, h)
            theirs = fp.slic(img, n, compactness=compactness)
            ours = slic(to_batch(img), torch.tensor([n]), 160, compactness=compactness)[0].numpy()
            grid = slic(to_batch(img), torch.tensor([n]), 160, iterations=0)[0].numpy()
            assert len(np.unique(ours)) == len(np.unique(theirs)) == n
            aris.append(adjusted_rand(ours, theirs))
            f1s.append(boundary_f1(ours, theirs))
            grid_f1s.append(boundary_f1(grid, theirs))
    aris, f1s, grid_f1s = np.array(aris), np.array(f1s), np.array(grid_f1s)
    # Measured on these 8 cases (ARI; boundary F1 at 1 pixel):
    #   compactness 10: ARI min 0.895 mean 0.936; F1 min 0.980 mean 0.997   (the initial grid: ARI mean 0.931, F1 0.997)
    #   compactness 1:  ARI min 0.794 mean 0.840; F1 min 0.822 mean 0.922   (the initial grid: ARI mean 0.829, F1 0.899)
    # At albumentations' scale compactness 10 leaves segments close to the grid (ARI < 1 there is mostly albumentations'
    # grid: centres at S//2 + kS tie-break one pixel later). A colour term 3x too strong fails (compactness 10: ARI min
    # 0.838, F1 min 0.822; compactness 1: ARI mean 0.781, F1 mean 0.865); one ignored fails the F1 gain over the grid.
    if compactness == 10.0:
        assert aris.min() >= 0.87 and aris.mean() >= 0.92, aris
        assert f1s.min() >= 0.96 and f1s.mean() >= 0.99, f1s
    else:
        assert aris.min() >= 0.77 and aris.mean() >= 0.82, aris
        assert f1s.min() >= 0.79 and f1s.mean() >= 0.90, f1s
        assert f1s.mean() >= grid_f1s.mean() + 0.012, (f1s.mean(), grid_f1s.mean())  # measured gain 0.023


def test_no_host_reads():
    """Runs on the meta device (any read of a value raises there), so it makes no host sync on CUDA."""
    x = torch.rand(2, 3, 16, 16, device="meta")
    n = torch.tensor([4, 9], device="meta")
    assert slic(x, n, 9).shape == (2, 16, 16)
    out = superpixels(x, torch.rand(2, device="meta"), n, torch.arange(2, device="meta"), max_segments=9, uint8_domain=True)
    assert out.shape == x.shape


# --- superpixels ------------------------------------------------------------------------------------------------------
def _sp(x, p, n, key, max_segments, uint8_domain=False, **kw):
    b = x.shape[0]
    p = torch.full((b,), float(p)) if not isinstance(p, torch.Tensor) else p
    n = torch.full((b,), int(n)) if not isinstance(n, torch.Tensor) else n
    key = torch.full((b,), int(key)) if not isinstance(key, torch.Tensor) else key
    return superpixels(x, p, n, key, max_segments=max_segments, uint8_domain=uint8_domain, **kw)


@pytest.mark.parametrize("uint8_domain", [False, True])
def test_p_zero_unchanged_p_one_means(uint8_domain):
    imgs = to_batch(sample_image("china.jpg", 64, 48), sample_image("flower.jpg", 64, 48))
    x = (imgs * 255).round() if uint8_domain else imgs
    n = torch.tensor([20, 50])
    assert torch.equal(_sp(x, 0.0, n, 3, 64, uint8_domain), x)
    out = _sp(x, 1.0, n, 3, 64, uint8_domain)
    assert out.dtype == x.dtype and out.shape == x.shape
    lab = slic(x, n, 64).numpy()
    for b in range(2):
        want = seg_means(x[b].numpy(), lab[b])
        if uint8_domain:
            assert np.array_equal(out[b].numpy(), np.clip(np.round(want), 0, 255).astype(np.float32))
        else:
            np.testing.assert_allclose(out[b].numpy(), want, rtol=0, atol=1e-6)
    x64 = x.double()
    out64 = _sp(x64, 1.0, n, 3, 64, uint8_domain)
    assert out64.dtype == torch.float64
    if not uint8_domain:
        np.testing.assert_allclose(out64[0].numpy(), seg_means(x64[0].numpy(), slic(x64, n, 64)[0].numpy()), rtol=0, atol=1e-12)


def test_uint8_rounding_half_to_even_and_clamp():
    # n_segments 1: the whole image is one segment
    x = torch.tensor([0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 300.0, 400.0, -10.0, -20.0]).view(5, 1, 1, 2)
    out = _sp(x, 1.0, 1, 0, 4, uint8_domain=True)
    assert out.view(5, 2)[:, 0].tolist() == [0.0, 2.0, 2.0, 255.0, 0.0]  # 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 350 -> 255, -15 -> 0
    assert torch.equal(out.view(5, 2)[:, 0], out.view(5, 2)[:, 1])
    flt = _sp(x[:3] / 4, 1.0, 1, 0, 4, uint8_domain=False)
    assert flt.view(3, 2)[:, 0].tolist() == [0.125, 0.375, 0.625]  # float domain: the mean itself


def _replaced(x: torch.Tensor, out: torch.Tensor, lab: torch.Tensor) -> list[np.ndarray]:
    """Per sample, the replaced flag of each present segment (noise images: a replaced segment is flat and changed)."""
    res = []
    for b in range(x.shape[0]):
        lb = lab[b].numpy()
        flags = []
        for s in np.unique(lb):
            m = lb == s
            o, i = out[b].numpy()[:, m], x[b].numpy()[:, m]
            flags.append(bool((o == o[:, :1]).all() and not (o == i).all()))
        res.append(np.array(flags))
    return res


def test_decisions_keyed_and_deterministic():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 32, 32, generator=g)
    x[2:] = x[:2]
    key = torch.tensor([7, 7, 7, 8])
    out = _sp(x, 0.5, 64, key, 64)
    assert torch.equal(out, _sp(x, 0.5, 64, key, 64))
    assert torch.equal(out[0:1], _sp(x[0:1], 0.5, 64, 7, 64))  # a sample's decisions do not depend on the batch
    assert torch.equal(out[2], out[0])  # same image, same key
    assert not torch.equal(out[3], out[1])  # same image, another key
    lab = slic(x, torch.full((4,), 64), 64)
    flags = _replaced(x, out, lab)
    want = (mix(mix(torch.tensor([7, 8]).view(2, 1) ^ 0x5EC) ^ torch.arange(64).view(1, 64)) >> 8).double() * INV24 < 0.5
    for b, row in ((0, 0), (3, 1)):
        present = np.unique(lab[b].numpy())
        assert np.array_equal(flags[b], want[row].numpy()[present])


def test_replaced_fraction_matches_p():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(16, 3, 48, 48, generator=g)
    n = torch.full((16,), 144)
    key = torch.arange(100, 116)
    lab = slic(x, n, 144, iterations=2)  # the decisions do not depend on the segmentation's quality
    for p in (0.1, 0.5, 0.85):
        flags = np.concatenate(_replaced(x, _sp(x, p, n, key, 144, iterations=2), lab))
        tol = 4 * math.sqrt(p * (1 - p) / flags.size)  # 4 binomial standard deviations (~2300 segments)
        assert abs(flags.mean() - p) <= tol, (p, flags.mean(), tol)
    per_sample = torch.tensor([0.0, 1.0] * 8)
    flags = _replaced(x, _sp(x, per_sample, n, key, 144, iterations=2), lab)
    assert all(f.all() if b % 2 else not f.any() for b, f in enumerate(flags))


def test_gradient_to_image_only():
    base = torch.zeros(2, 3, 6, 6, dtype=torch.float64)
    base[:, 0, :3] = 0.9
    base[:, 1, :, 3:] = 0.8
    base[1, 2, 1:4, 1:4] = 0.7
    g = torch.Generator().manual_seed(3)
    x = (base + 0.05 * torch.rand(base.shape, generator=g, dtype=torch.float64)).requires_grad_(True)
    p = torch.tensor([1.0, 0.6], dtype=torch.float64, requires_grad=True)
    n, key = torch.tensor([4, 6]), torch.tensor([5, 9])

    def fn(img):
        return superpixels(img, p, n, key, max_segments=8, uint8_domain=False, iterations=3)

    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-8)
    fn(x).sum().backward()
    assert p.grad is None
    # sample 0 fully replaced: d sum(out) / d x = 1 everywhere (each mean spreads its pixels' weight back)
    torch.testing.assert_close(x.grad[0], torch.ones_like(x.grad[0]))
    # uint8 domain: the rounded means carry no gradient, kept pixels the identity
    xu = (x.detach() * 255).round().requires_grad_(True)
    superpixels(xu, torch.tensor([1.0, 0.0]), n, key, max_segments=8, uint8_domain=True, iterations=3).sum().backward()
    assert bool((xu.grad[0] == 0).all()) and bool((xu.grad[1] == 1).all())


# --- bad input -------------------------------------------------------------------------------------------------------
def test_bad_input():
    x = torch.rand(2, 3, 8, 8)
    n, p, key = torch.tensor([3, 4]), torch.tensor([0.5, 0.5]), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="n_segments"):
        slic(x, torch.tensor([3]), 8)
    with pytest.raises(ValueError, match="n_segments"):
        slic(x, torch.tensor([0, 4]), 8)
    with pytest.raises(ValueError, match="n_segments"):
        slic(x, torch.tensor([3, 9]), 8)
    with pytest.raises(ValueError, match="n_segments"):
        slic(x, torch.tensor([3.0, 4.0]), 8)
    with pytest.raises(ValueError, match="max_segments"):
        slic(x, n, 0)
    with pytest.raises(ValueError, match="img"):
        slic(x[0], n, 8)
    with pytest.raises(ValueError, match="iterations"):
        slic(x, n, 8, iterations=-1)
    with pytest.raises(ValueError, match="compactness"):
        slic(x, n, 8, compactness=-1.0)
    with pytest.raises(ValueError, match="p_replace"):
        superpixels(x, torch.tensor([0.5]), n, key, max_segments=8, uint8_domain=False)
    with pytest.raises(ValueError, match="p_replace"):
        superpixels(x, torch.tensor([0.5, 1.5]), n, key, max_segments=8, uint8_domain=False)
    with pytest.raises(ValueError, match="key"):
        superpixels(x, p, n, torch.tensor([1, 2, 3]), max_segments=8, uint8_domain=False)
    with pytest.raises(ValueError, match="key"):
        superpixels(x, p, n, torch.tensor([1.0, 2.0]), max_segments=8, uint8_domain=False)
    with pytest.raises(ValueError, match="n_segments"):
        superpixels(x, p, torch.tensor([3, 4, 5]), key, max_segments=8, uint8_domain=False)
    with pytest.raises(ValueError, match="n_segments"):
        superpixels(x, p, torch.tensor([3, 0]), key, max_segments=8, uint8_domain=False)
