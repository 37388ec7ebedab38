"""fastaug.from_torchvision / from_albumentations: converted ops draw from the same distributions as the original
(a two-sample KS test on a per-sample statistic of one fixed image) and fixed-parameter ops give the same pixels."""

import numpy as np
import pytest
import torch
import tv
from scipy.stats import ks_2samp

import fastaug

TF = tv.load()
N = 200


def _image(h=16, w=16) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x * 7 + y * 3) % 256]).to(torch.uint8)


def _stat(out: torch.Tensor) -> np.ndarray:
    """One number per sample that moves with geometry and color: channel-weighted means of the top-left quadrant."""
    out = out.float() if out.is_floating_point() else out.float() / 255
    h, w = out.shape[-2:]
    q = out[:, :, : h // 2, : w // 2].mean((2, 3))
    stat = (q * torch.arange(1, out.shape[1] + 1)).sum(1).numpy() + 0.1 * out.std((1, 2, 3)).numpy()
    return np.round(stat / 0.05) * 0.05  # a grid coarser than 1 LSB: atoms of fixed outputs within 1 LSB coincide


def _check(original, converted, per_sample, fixed=None, x=None, atol=1.0):
    x = _image() if x is None else x
    ours = converted(x.expand(N, *x.shape).contiguous(), indices=torch.arange(N))
    theirs = torch.stack([per_sample(original, x) for _ in range(N)])
    assert ours.shape == theirs.shape
    p = ks_2samp(_stat(ours), _stat(theirs)).pvalue
    assert p > 1e-3, f"distributions differ: KS p = {p:.2g}"
    if fixed is not None:
        orig_fixed, conv_fixed = fixed
        a, b = conv_fixed(x[None])[0], per_sample(orig_fixed, x)
        assert torch.allclose(a.double(), b.double(), atol=atol, rtol=0), float((a.double() - b.double()).abs().max())


# ------------------------------------------------------------------------------------------- torchvision

if TF is not None:
    import torchvision.transforms.v2 as V
    from torchvision.transforms.v2 import InterpolationMode as IM

    def _tv(op, x):
        return op(x)

    TV_CASES = {
        "RandomHorizontalFlip": (V.RandomHorizontalFlip(0.5), V.RandomHorizontalFlip(1.0)),
        "RandomVerticalFlip": (V.RandomVerticalFlip(0.5), V.RandomVerticalFlip(1.0)),
        "RandomAffine": (V.RandomAffine(30, (0.1, 0.1), (0.8, 1.2), 10, IM.BILINEAR), V.RandomAffine((20, 20), interpolation=IM.BILINEAR)),
        "RandomRotation": (V.RandomRotation(45), V.RandomRotation((30, 30))),
        "RandomPerspective": (V.RandomPerspective(0.5, 0.7), None),
        "RandomResizedCrop": (V.RandomResizedCrop(12, antialias=False), None),
        "ColorJitter": (V.ColorJitter(0.4, 0.4, 0.4, 0.1), V.ColorJitter(brightness=(1.3, 1.3))),
        "RandomPosterize": (V.RandomPosterize(3, 0.5), V.RandomPosterize(3, 1.0)),
        "RandomSolarize": (V.RandomSolarize(128, 0.5), V.RandomSolarize(128, 1.0)),
        "RandomEqualize": (V.RandomEqualize(0.5), V.RandomEqualize(1.0)),
        "RandomAutocontrast": (V.RandomAutocontrast(0.5), V.RandomAutocontrast(1.0)),
        "RandomInvert": (V.RandomInvert(0.5), V.RandomInvert(1.0)),
        "RandomAdjustSharpness": (V.RandomAdjustSharpness(2.0, 0.5), V.RandomAdjustSharpness(2.0, 1.0)),
        "RandomGrayscale": (V.RandomGrayscale(0.5), V.RandomGrayscale(1.0)),
        "GaussianBlur": (V.GaussianBlur(5, (0.1, 2.0)), V.GaussianBlur(5, (1.0, 1.0))),
        "GaussianNoise": (V.Compose([V.ToDtype(torch.float32, scale=True), V.GaussianNoise(0.0, 0.1)]), None),
        "ElasticTransform": (V.ElasticTransform(20.0, 3.0), None),
        "RandomErasing": (V.RandomErasing(0.5), None),
        "Normalize": (V.Compose([V.ToDtype(torch.float32, scale=True), V.Normalize([0.5, 0.4, 0.3], [0.2, 0.3, 0.4])]),) * 2,
        "ToDtype": (V.ToDtype(torch.float32, scale=True),) * 2,
        "RandAugment": (V.RandAugment(), None),
        "TrivialAugmentWide": (V.TrivialAugmentWide(), None),
        "AutoAugment": (V.AutoAugment(), None),
    }
else:
    TV_CASES = {}


@pytest.mark.skipif(TF is None, reason="torchvision not installed")
@pytest.mark.parametrize("name", sorted(TV_CASES))
def test_torchvision_op_same_distribution_and_pixels(name):
    original, fixed = TV_CASES[name]
    conv = fastaug.from_torchvision(original, backend="torch", seed=1)
    assert isinstance(conv, fastaug.Compose)
    pair = None if fixed is None else (fixed, fastaug.from_torchvision(fixed, backend="torch"))
    atol = 1e-5 if name in ("Normalize", "ToDtype") else 1.0
    _check(original, conv, _tv, pair, atol=atol)


@pytest.mark.skipif(TF is None, reason="torchvision not installed")
def test_torchvision_unsupported_ops_raise_or_fall_back():
    pipe = V.Compose([V.RandomHorizontalFlip(1.0), V.CenterCrop(8), V.RandomResizedCrop(8), V.RandomInvert(1.0)])
    with pytest.raises(ValueError, match=r"CenterCrop \(no fastaug equivalent\), RandomResizedCrop \(antialias"):
        fastaug.from_torchvision(pipe)
    fb = fastaug.from_torchvision(V.Compose([V.RandomHorizontalFlip(1.0), V.CenterCrop(8), V.RandomInvert(1.0)]), fallback=True)
    assert isinstance(fb, fastaug.Pipeline)
    x = torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8)
    assert torch.equal(fb(x), 255 - x.flip(-1)[..., 2:10, 2:10])
    rand = fastaug.from_torchvision(V.Compose([V.RandomCrop(8), V.RandomInvert(0.5)]), fallback=True, seed=3)
    assert torch.equal(rand(x, indices=torch.arange(4), epoch=2), rand(x, indices=torch.arange(4), epoch=2))  # keyed draws replay
    with pytest.raises(TypeError, match="pipeline"):
        fastaug.from_torchvision(lambda x: x)


# ------------------------------------------------------------------------------------------- albumentations

try:
    import albumentations as A
except ImportError:  # pragma: no cover
    A = None


def _al(op, x):
    out = op(image=x.permute(1, 2, 0).numpy())["image"]
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)


AL_CASES = {} if A is None else {
    "HorizontalFlip": (A.HorizontalFlip(p=0.5), A.HorizontalFlip(p=1.0)),
    "VerticalFlip": (A.VerticalFlip(p=0.5), A.VerticalFlip(p=1.0)),
    "InvertImg": (A.InvertImg(p=0.5), A.InvertImg(p=1.0)),
    "ToGray": (A.ToGray(p=0.5), A.ToGray(p=1.0)),
    "Normalize": (A.Normalize(),) * 2,
    "RandomResizedCrop": (A.RandomResizedCrop(size=(12, 12)), None),
    "SafeRotate": (A.SafeRotate(limit=40, p=0.7), None),
    "RGBShift": (A.RGBShift(p=0.7), None),
    "MultiplicativeNoise": (A.MultiplicativeNoise(p=0.7), None),
    "PixelDropout": (A.PixelDropout(dropout_prob=0.1, p=0.7), None),
    "SaltAndPepper": (A.SaltAndPepper(p=0.7), None),
    "Emboss": (A.Emboss(p=0.7), None),
    "Sharpen": (A.Sharpen(p=0.7), None),
    "MotionBlur": (A.MotionBlur(p=0.7), None),
    "CoarseDropout": (A.CoarseDropout(p=0.7), None),
    "XYMasking": (A.XYMasking(num_masks_x=(1, 2), mask_x_length=(2, 5), p=0.7), None),
}  # fmt: skip


@pytest.mark.skipif(A is None, reason="albumentations not installed")
@pytest.mark.parametrize("name", sorted(AL_CASES))
def test_albumentations_op_same_distribution_and_pixels(name):
    original, fixed = AL_CASES[name]
    original.set_random_seed(0)
    conv = fastaug.from_albumentations(original, backend="torch", seed=1)
    assert isinstance(conv, fastaug.Compose)
    pair = None if fixed is None else (fixed, fastaug.from_albumentations(fixed, backend="torch"))
    _check(original, conv, _al, pair, atol=1e-5 if name == "Normalize" else 1.0)


@pytest.mark.skipif(A is None, reason="albumentations not installed")
def test_albumentations_unsupported_ops_raise_or_fall_back():
    with pytest.raises(ValueError, match=r"RandomBrightnessContrast \(no fastaug equivalent\)"):
        fastaug.from_albumentations(A.Compose([A.HorizontalFlip(p=1.0), A.RandomBrightnessContrast(p=1.0)]))
    fb = fastaug.from_albumentations(A.Compose([A.HorizontalFlip(p=1.0), A.CenterCrop(8, 8), A.InvertImg(p=1.0)]), fallback=True)
    x = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    assert torch.equal(fb(x), 255 - x.flip(-1)[..., 2:10, 2:10])
