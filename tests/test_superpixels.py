"""superpixels and Superpixels through the engine: every backend equals the reference (the engine runs the torch
segmentation before a backend's kernels), pipelines replay, listed calls replay through fastaug.functional, gradients,
bad input. (The segmentation itself: tests/test_superpixels_module.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from images import image

import fastaug
import fastaug.functional as F
from fastaug.ops import superpixels as S


def _photo(b: int = 3, h: int = 48, w: int = 64) -> torch.Tensor:
    from sklearn.datasets import load_sample_image

    im = torch.from_numpy(np.array(load_sample_image("china.jpg"))).permute(2, 0, 1)[None].float()
    im = torch.nn.functional.interpolate(im, size=(h, w), mode="area").round().to(torch.uint8)
    return im.repeat(b, 1, 1, 1)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_every_segment_replaced_by_its_mean(dtype):
    x = _photo()
    x = x if dtype == torch.uint8 else x.float() / 255
    n = torch.tensor([20, 40, 80])
    got = F.superpixels(x, 1.0, n, backend="numba")
    work = x.double() if dtype == torch.float32 else x.double()
    labels = S.slic(x.float() * (1 / 255 if dtype == torch.uint8 else 1), n, 80)
    for i in range(3):
        for s in labels[i].unique():
            m = labels[i] == s
            mean = work[i][:, m].mean(1)
            want = torch.round(mean) if dtype == torch.uint8 else mean
            torch.testing.assert_close(got[i][:, m].double(), want.view(3, 1).expand(3, int(m.sum())), atol=1e-6, rtol=0)


def test_p_replace_zero_is_identity_and_backends_agree():
    x = _photo()
    assert torch.equal(F.superpixels(x, 0.0, 50), x)
    p = torch.tensor([0.2, 0.5, 0.9])
    ref = F.superpixels(x, p, 60, seed=3, backend="torch")
    assert torch.equal(F.superpixels(x, p, 60, seed=3, backend="numba"), ref)
    changed = (ref != x).any(1).double().mean((1, 2))
    assert float(changed[0]) < float(changed[2])


def test_pipeline_replays_and_calls_replay_through_functional():
    x = _photo(4)
    aug = fastaug.Compose([fastaug.RandomAffine(10), fastaug.Superpixels((0.3, 0.6), (20, 60), p=1.0),
                           fastaug.ColorJitter(0.2, 0.2)], seed=1)  # fmt: skip
    out, rec = aug(x, return_record=True)
    torch.testing.assert_close(rec.replay(x), out, atol=0, rtol=0)
    assert torch.equal(aug(x, backend="torch"), out)
    calls = rec.calls(2)
    kw = dict(calls[1][1])
    assert calls[1][0] == "superpixels" and 20 <= kw["n_segments"] <= 60 and 0.3 <= kw["p_replace"] <= 0.6
    y = F.superpixels(x[2:3], **kw)
    assert torch.equal(y, F.superpixels(x[2:3], kw["p_replace"], kw["n_segments"], key=kw["key"], max_segments=60))


def test_gradients_through_the_means():
    x = (_photo(2, 16, 20).float() / 255).requires_grad_(True)
    grads = []
    for backend in ("torch", "numba"):
        xx = x.detach().clone().requires_grad_(True)
        y = F.adjust_brightness(F.superpixels(xx, 0.5, 12, backend=backend), 0.9, backend=backend)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(0)))
        grads.append(xx.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-6)
    assert float(grads[0].abs().sum()) > 0


@pytest.mark.parametrize("call,exc,name", [
    (lambda x: F.superpixels(x, 1.5), ValueError, "p_replace"),
    (lambda x: F.superpixels(x, 0.5, 0), ValueError, "n_segments"),
    (lambda x: F.superpixels(x, 0.5, 50, max_segments=20), ValueError, "max_segments"),
    (lambda x: F.superpixels(x, 0.5, 10, max_size=0), ValueError, "max_size"),
    (lambda x: fastaug.Superpixels(max_size=12.5), ValueError, "max_size"),
    (lambda x: fastaug.Superpixels(n_segments=(10.5, 20)), ValueError, "n_segments"),
    (lambda x: fastaug.Superpixels(p_replace=(0.5, 0.1)), ValueError, "p_replace"),
])  # fmt: skip
def test_bad_input(call, exc, name):
    with pytest.raises(exc, match=name):
        call(image(torch.uint8, (2, 3, 12, 12), 0))


def test_max_size_segments_a_downscaled_copy_and_replaces_at_full_resolution():
    x = _photo(2, 60, 80).float() / 255
    got = F.superpixels(x, 1.0, 30, max_size=40)
    small = torch.nn.functional.interpolate(x, size=(30, 40), mode="area")  # larger side 40: int(60 * 0.5), int(80 * 0.5)
    labels = S.slic(small, torch.tensor([30, 30]), 30)
    labels = torch.nn.functional.interpolate(labels.unsqueeze(1).double(), size=(60, 80), mode="nearest")[:, 0].long()
    for i in range(2):
        for s in labels[i].unique():
            m = labels[i] == s
            mean = x[i][:, m].double().mean(1)
            torch.testing.assert_close(got[i][:, m].double(), mean.view(3, 1).expand(3, int(m.sum())), atol=1e-6, rtol=0)
    assert torch.equal(F.superpixels(x, 1.0, 30, max_size=80), F.superpixels(x, 1.0, 30))  # not larger: full resolution


def test_transform_default_max_size_lists_and_replays():
    x = _photo(2, 96, 160)
    aug = fastaug.Compose([fastaug.Superpixels((0.5, 0.5), (40, 40), p=1.0)], seed=2)
    out, rec = aug(x, return_record=True)
    name, kw = rec.calls(0)[0]
    assert name == "superpixels" and kw["max_size"] == 128
    assert torch.equal(F.superpixels(x[:1], **kw), out[:1])
    assert not torch.equal(out, F.superpixels(x, 0.5, 40, key=torch.tensor([kw["key"], rec.calls(1)[0][1]["key"]])))
