"""fastaug.from_torchvision / from_albumentations: converted ops draw the same parameters as the original (their drawn
parameters compared directly, 4000 draws a side: test_*_op_draws_the_same_parameters, and the geometry matrices), give
the same pixels for fixed parameters or replayed draws, and pass a coarse pixel-statistics check (200 samples: it also
covers per-pixel randomness, noise and dropout, that no parameter records)."""

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


def _stats(out: torch.Tensor) -> np.ndarray:
    """Per sample: the channel means of each image quadrant (they move with geometry and color) and the std."""
    out = out.float() if out.is_floating_point() else out.float() / 255
    h, w = out.shape[-2:]
    quads = [out[:, :, i * h // 2 : (i + 1) * h // 2, j * w // 2 : (j + 1) * w // 2].mean((2, 3)) for i in range(2) for j in range(2)]
    return torch.cat([*quads, out.std((1, 2, 3))[:, None]], 1).double().numpy()


def _snap(ours: np.ndarray, theirs: np.ndarray, tol: float = 2.5 / 255) -> np.ndarray:
    """Our values within ``tol`` (a few LSB) of one of theirs become that value: atoms (fixed outputs: identity,
    p < 1) that differ by rounding coincide; a continuous part moves by at most ``tol``."""
    ref = np.sort(theirs)
    pos = np.clip(np.searchsorted(ref, ours), 1, len(ref) - 1)
    near = np.where(np.abs(ref[pos - 1] - ours) <= np.abs(ref[pos] - ours), ref[pos - 1], ref[pos])
    return np.where(np.abs(near - ours) <= tol, near, ours)


def _check(original, converted, per_sample, fixed=None, x=None, atol=1.0, n=N):
    """KS two-sample test on each statistic of :func:`_stats` (all must pass at 1e-4; fixed seeds), then the same
    pixels for the fixed-parameter pair (within ``atol``: 1 LSB for uint8 unless stated)."""
    x = _image() if x is None else x
    ours = converted(x.expand(n, *x.shape).contiguous(), indices=torch.arange(n))
    theirs = torch.stack([per_sample(original, x) for _ in range(n)])
    assert ours.shape == theirs.shape
    a, b = _stats(ours), _stats(theirs)
    p = min(ks_2samp(_snap(a[:, k], b[:, k]), b[:, k]).pvalue for k in range(a.shape[1]))
    assert p > 1e-4, f"distributions differ: smallest KS p = {p:.2g}"
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
        "RandomPerspective": (V.RandomPerspective(0.5, 0.7), V.RandomPerspective(0.0, 1.0)),  # distortion 0: the identity
        "RandomResizedCrop": (V.RandomResizedCrop(12, antialias=False), V.RandomResizedCrop(12, (1, 1), (1, 1), antialias=False)),
        "ColorJitter": (V.ColorJitter(0.4, 0.4, 0.4, 0.1), V.ColorJitter(brightness=(1.3, 1.3))),
        "RandomPosterize": (V.RandomPosterize(3, 0.5), V.RandomPosterize(3, 1.0)),
        "RandomSolarize": (V.RandomSolarize(128, 0.5), V.RandomSolarize(128, 1.0)),
        "RandomEqualize": (V.RandomEqualize(0.5), V.RandomEqualize(1.0)),
        "RandomAutocontrast": (V.RandomAutocontrast(0.5), V.RandomAutocontrast(1.0)),
        "RandomInvert": (V.RandomInvert(0.5), V.RandomInvert(1.0)),
        "RandomAdjustSharpness": (V.RandomAdjustSharpness(2.0, 0.5), V.RandomAdjustSharpness(2.0, 1.0)),
        "RandomGrayscale": (V.RandomGrayscale(0.5), V.RandomGrayscale(1.0)),
        "GaussianBlur": (V.GaussianBlur(5, (0.1, 2.0)), V.GaussianBlur(5, (1.0, 1.0))),
        "GaussianNoise": (
            V.Compose([V.ToDtype(torch.float32, scale=True), V.GaussianNoise(0.0, 0.1)]),
            V.Compose([V.ToDtype(torch.float32, scale=True), V.GaussianNoise(0.1, 0.0)]),
        ),
        "ElasticTransform": (V.ElasticTransform(20.0, 3.0), V.ElasticTransform(0.0, 3.0)),  # alpha 0: the identity
        "RandomErasing": (V.RandomErasing(0.5), None),  # no fixed form: pixels by replay (test_torchvision_random_op_pixels_...)
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
    atol = 1e-5 if name in ("Normalize", "ToDtype", "GaussianNoise") else 1.0
    _check(original, conv, _tv, pair, atol=atol)


GEOMETRIC = {"affine", "rotate", "perspective", "elastic_transform", "resized_crop", "horizontal_flip", "vertical_flip"}
RANDOM_TV = {  # ops with no fixed-parameter form: their drawn parameters replayed with torchvision instead
    "RandomErasing": lambda: V.RandomErasing(1.0, value=3), "RandomPerspective": lambda: V.RandomPerspective(0.5, 0.7),
    "ElasticTransform": lambda: V.ElasticTransform(20.0, 3.0), "RandomResizedCrop": lambda: V.RandomResizedCrop(12, antialias=False),
    "RandAugment": lambda: V.RandAugment(), "TrivialAugmentWide": lambda: V.TrivialAugmentWide(), "AutoAugment": lambda: V.AutoAugment(),
}  # fmt: skip


def _tv_kwargs(name: str, kwargs: dict) -> dict:
    if name == "erase":
        return dict(kwargs, v=torch.tensor(kwargs["v"], dtype=torch.float32).view(-1, 1, 1))
    if name == "elastic_transform":
        return dict(kwargs, displacement=torch.as_tensor(kwargs["displacement"], dtype=torch.float32).reshape(1, *_image().shape[1:], 2))
    return kwargs


@pytest.mark.skipif(TF is None, reason="torchvision not installed")
@pytest.mark.parametrize("name", sorted(RANDOM_TV))
def test_torchvision_random_op_pixels_replay_with_torchvision(name):
    """Same pixels for the drawn parameters: each sample's recorded calls, op by op, give torchvision's pixels (uint8
    within 1 LSB per op, in lockstep: one LSB may flip a later threshold) and chain to the converted output."""
    conv = fastaug.from_torchvision(RANDOM_TV[name](), backend="torch", seed=1)
    x = _image()
    y, record = conv(x.expand(24, *x.shape).contiguous(), indices=torch.arange(24), return_record=True)
    checked = 0
    for i in range(24):
        calls = record.calls(i)
        if sum(n in GEOMETRIC for n, _ in calls) > 1:
            continue  # geometric ops compose into one resampling: not torchvision's sequence
        img = x
        for op, kwargs in calls:
            ours = getattr(fastaug.functional, op)(img, **kwargs, backend="torch")
            theirs = getattr(TF, op)(img, **_tv_kwargs(op, kwargs))
            assert (ours.int() - theirs.int()).abs().max() <= 1, f"sample {i}: {op} {kwargs}"
            img = ours
        assert torch.equal(img, y[i]), f"sample {i}: {calls}"
        checked += 1
    assert checked >= 12


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
    "RandomResizedCrop": (A.RandomResizedCrop(size=(12, 12)), A.RandomResizedCrop(size=(12, 10), scale=(1, 1), ratio=(1, 1))),
    "SafeRotate": (A.SafeRotate(limit=40, p=0.7), A.SafeRotate(limit=(30, 30), p=1.0)),
    "RGBShift": (A.RGBShift(p=0.7), A.RGBShift(r_shift_limit=(10, 10), g_shift_limit=(-20, -20), b_shift_limit=(5, 5), p=1.0)),
    "MultiplicativeNoise": (A.MultiplicativeNoise(p=0.7), A.MultiplicativeNoise(multiplier=(1.2, 1.2), p=1.0)),
    "PixelDropout": (A.PixelDropout(dropout_prob=0.1, p=0.7), A.PixelDropout(dropout_prob=1.0, drop_value=7, p=1.0)),
    "SaltAndPepper": (A.SaltAndPepper(p=0.7), A.SaltAndPepper(amount=(1, 1), salt_vs_pepper=(1, 1), p=1.0)),
    "Emboss": (A.Emboss(p=0.7), A.Emboss(alpha=(0.5, 0.5), strength=(0.4, 0.4), p=1.0)),
    "Sharpen": (A.Sharpen(p=0.7), A.Sharpen(alpha=(0.3, 0.3), lightness=(0.8, 0.8), p=1.0)),
    # on float images: for uint8 albumentations computes v - G v in uint8 (it wraps below 0; fastaug keeps the formula)
    "Sharpen-gaussian": (A.Sharpen(method="gaussian", p=0.7), A.Sharpen(alpha=(0.3, 0.3), method="gaussian", sigma=0.8, p=1.0)),
    "MotionBlur": (A.MotionBlur(p=0.7),
                   A.MotionBlur(blur_limit=(5, 5), angle_range=(30, 30), direction_range=(0, 0), allow_shifted=False, p=1.0)),
    "CoarseDropout": (A.CoarseDropout(p=0.7),  # one hole as large as the image: its position is fixed
                      A.CoarseDropout(num_holes_range=(1, 1), hole_height_range=(16, 16), hole_width_range=(16, 16), fill=9, p=1.0)),
    "XYMasking": (A.XYMasking(num_masks_x=(1, 2), mask_x_length=(2, 5), p=0.7),  # an x mask as wide as the image: fixed
                  A.XYMasking(num_masks_x=(1, 1), mask_x_length=(16, 16), num_masks_y=(1, 1), mask_y_length=(16, 16), fill=9, p=1.0)),
    "Affine": (A.Affine(scale=(0.7, 1.3), translate_percent=(-0.2, 0.1), rotate=(-40, 40), shear={"x": (-15, 10), "y": (0, 12)}, p=0.7),
               A.Affine(scale={"x": 1.2, "y": 0.9}, translate_px={"x": 2, "y": -3}, rotate=25, shear={"x": 10, "y": -5}, p=1.0)),
    "Affine-balanced-keep-ratio-nearest": (
        A.Affine(scale=(0.5, 1.5), translate_px=(-3, 2), rotate=(-90, 30), keep_ratio=True, balanced_scale=True, interpolation=0, p=0.8),
        A.Affine(scale=0.8, translate_percent=0.1, rotate=-30, shear=7, interpolation=0, p=1.0)),
    "Rotate": (A.Rotate(limit=(-60, 20), p=0.6), A.Rotate(limit=(33, 33), p=1.0)),
    "Rotate-nearest": (A.Rotate(limit=45, interpolation=0, p=0.9), A.Rotate(limit=(-47.3, -47.3), interpolation=0, p=1.0)),
    "GaussNoise": (A.GaussNoise(std_range=(0.05, 0.2), mean_range=(-0.05, 0.1), p=0.7),
                   A.GaussNoise(std_range=(0.0, 0.0), mean_range=(0.07, 0.07), p=1.0)),
    "Posterize": (A.Posterize(num_bits=(1, 6), p=0.7), A.Posterize(num_bits=3, p=1.0)),
    "Solarize": (A.Solarize(threshold_range=(0.2, 0.9), p=0.7), A.Solarize(threshold_range=(0.3, 0.3), p=1.0)),
}  # fmt: skip


FLOAT_AL = {"Sharpen-gaussian"}  # compared on float images


@pytest.mark.skipif(A is None, reason="albumentations not installed")
@pytest.mark.parametrize("name", sorted(AL_CASES))
def test_albumentations_op_same_distribution_and_pixels(name):
    original, fixed = AL_CASES[name]
    original.set_random_seed(0)
    conv = fastaug.from_albumentations(original, backend="torch", seed=1)
    assert isinstance(conv, fastaug.Compose)
    pair = None if fixed is None else (fixed, fastaug.from_albumentations(fixed, backend="torch"))
    x = _image().float() / 255 if name in FLOAT_AL else None
    _check(original, conv, _al, pair, x=x, atol=1e-5 if name == "Normalize" or name in FLOAT_AL else 1.0)


@pytest.mark.skipif(A is None, reason="albumentations not installed")
def test_albumentations_unsupported_ops_raise_or_fall_back():
    with pytest.raises(ValueError, match=r"RandomBrightnessContrast \(clip\(alpha \* v \+ beta\): contrast about 0"):
        fastaug.from_albumentations(A.Compose([A.HorizontalFlip(p=1.0), A.RandomBrightnessContrast(p=1.0)]))
    with pytest.raises(ValueError, match=r"Equalize \(its LUTs are cv2.equalizeHist's"):
        fastaug.from_albumentations(A.Equalize(mode="pil"))
    reasons = {
        A.Affine(fit_output=True): "fit_output=True", A.Affine(border_mode=1): "border_mode=1",
        A.Affine(rotate_method="ellipse"): "rotate_method='ellipse'", A.Affine(interpolation=2): "interpolation=2",
        A.Rotate(crop_border=True): "crop_border=True", A.Rotate(fill_mask=1): "fill_mask=1",
        A.Rotate(mask_interpolation=1): "mask_interpolation=1", A.GaussNoise(per_channel=False): "per_channel=False",
        A.GaussNoise(noise_scale_factor=0.5): "noise_scale_factor", A.Posterize(num_bits=[(2, 3), (3, 3), (4, 5)]): "num_bits per channel",
        A.SafeRotate(fill_mask=3): "fill_mask=3", A.SafeRotate(mask_interpolation=1): "mask_interpolation=1",
        A.SafeRotate(border_mode=4): "border_mode=4", A.SafeRotate(rotate_method="ellipse"): "rotate_method='ellipse'",
    }  # fmt: skip
    for op, reason in reasons.items():
        with pytest.raises(ValueError, match=rf"{type(op).__name__} \({reason}"):
            fastaug.from_albumentations(op)
    fb = fastaug.from_albumentations(A.Compose([A.HorizontalFlip(p=1.0), A.CenterCrop(8, 8), A.InvertImg(p=1.0)]), fallback=True)
    x = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    assert torch.equal(fb(x), 255 - x.flip(-1)[..., 2:10, 2:10])
    eq = fastaug.from_albumentations(A.Compose([A.Equalize(p=1.0), A.RandomBrightnessContrast(p=1.0)]), fallback=True, seed=5)
    assert isinstance(eq, fastaug.Pipeline) and torch.equal(eq(x, epoch=1), eq(x, epoch=1))  # per-sample fallback, keyed draws


@pytest.mark.skipif(A is None, reason="albumentations not installed")
def test_albumentations_solarize_and_noise_on_float_images():
    """The threshold and noise scale with the image's maximum (1 for floats): the same values within 1e-6."""
    x = torch.rand(3, 10, 12)
    for op in (A.Solarize(threshold_range=(0.4, 0.4), p=1.0), A.GaussNoise(std_range=(0.0, 0.0), mean_range=(-0.1, -0.1), p=1.0)):
        ours = fastaug.from_albumentations(op, backend="torch")(x[None])[0]
        torch.testing.assert_close(ours, _al(op, x), atol=1e-6, rtol=0)


@pytest.mark.skipif(A is None, reason="albumentations not installed")
def test_albumentations_solarize_threshold_just_above_an_integer():
    """albumentations' uint8 LUT compares 0..255 with the float64 threshold: 51 + 1e-9 leaves 51 as is (a float32
    threshold would round to 51 and invert it)."""
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16).expand(3, 16, 16).contiguous()
    for t in ((51 + 1e-9) / 255, (200 - 1e-9) / 255, 0.5):
        op = A.Solarize(threshold_range=(t, t), p=1.0)
        assert torch.equal(fastaug.from_albumentations(op, backend="torch")(x[None])[0], _al(op, x)), t


@pytest.mark.skipif(A is None, reason="albumentations not installed")
def test_with_probability_keeps_the_inner_draws():
    """WithProbability only masks samples: where applied, the pixels are those of the wrapped transform."""
    from fastaug.convert import WithProbability

    x = _image().expand(64, 3, 16, 16).contiguous()
    inner = fastaug.Compose([fastaug.RandomRotation((-40, 40), "bilinear")], seed=4, backend="torch")
    half = fastaug.Compose([WithProbability(fastaug.RandomRotation((-40, 40), "bilinear"), 0.5)], seed=4, backend="torch")
    full, out = inner(x), half(x)
    same = (out == x).flatten(1).all(1)
    assert 16 < int(same.sum()) < 48 and torch.equal(out[~same], full[~same])
    with pytest.raises(ValueError, match="probability"):
        WithProbability(fastaug.RandomInvert(1.0), 1.5)


GEOMETRY_CASES = {} if A is None else {
    "Affine-rotate": A.Affine(rotate=(-40, 25), p=0.7),
    "Affine-scale": A.Affine(scale={"x": (0.7, 1.3), "y": (0.9, 1.6)}, p=1.0),
    "Affine-scale-balanced-keep-ratio": A.Affine(scale=(0.5, 1.5), keep_ratio=True, balanced_scale=True, p=1.0),
    "Affine-scale-balanced-below-1": A.Affine(scale={"x": (0.6, 0.9), "y": (1.2, 1.4)}, balanced_scale=True, p=1.0),
    "Affine-translate-percent": A.Affine(translate_percent={"x": (-0.2, 0.1), "y": (0.05, 0.3)}, p=1.0),
    "Affine-translate-px": A.Affine(translate_px={"x": (-3, 2), "y": (1, 4)}, p=1.0),
    "Affine-shear": A.Affine(shear={"x": (-15, 10), "y": (0, 12)}, p=1.0),
    "Affine-all": AL_CASES["Affine"][0],
    "Rotate": AL_CASES["Rotate"][0],
}  # fmt: skip


@pytest.mark.skipif(A is None, reason="albumentations not installed")
@pytest.mark.parametrize("name", sorted(GEOMETRY_CASES))
def test_albumentations_geometry_draws_the_same_matrices(name):
    """The pixel map itself, one random parameter at a time (then all): albumentations' matrix (inverted: output ->
    input index) and the converted op's recorded matrix have the same distribution, entry by entry (KS at 1e-4, 2000
    draws each; 10x17 images, non-square); the applied fraction matches p (4 sigma)."""
    original = GEOMETRY_CASES[name]
    original.set_random_seed(0)
    h, w, n = 10, 17, 2000
    conv = fastaug.from_albumentations(original, backend="torch", seed=3)
    _, record = conv(torch.zeros(n, 3, h, w, dtype=torch.uint8), indices=torch.arange(n), return_record=True)
    (call,) = record.op_calls
    applied = torch.ones(n, dtype=torch.bool) if call.applied is None else call.applied
    ours = np.round(call.pixel_map()[applied].numpy(), 6)  # atoms (integer translations) equal despite solver noise
    data = {"image": np.zeros((h, w, 3), np.uint8)}
    theirs = np.stack([np.linalg.inv(original.get_params_dependent_on_data({"shape": (h, w, 3)}, data)["matrix"]) for _ in range(n)])
    theirs = np.round(theirs, 6)
    assert abs(len(ours) / n - original.p) < 4 * (original.p * (1 - original.p) / n) ** 0.5 + 1e-9  # the probability p
    for i, j in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]:
        if np.ptp(theirs[:, i, j]) < 1e-9:  # a constant entry: the same constant
            np.testing.assert_allclose(ours[:, i, j], theirs[0, i, j], atol=1e-9)
            continue
        p = ks_2samp(ours[:, i, j], theirs[:, i, j]).pvalue
        assert p > 1e-4, f"matrix entry {(i, j)}: KS p = {p:.2g}"


# ------------------------------------------------------------------------------------------- drawn parameters
#
# The distribution checks above look at pixel statistics of 200 samples: they catch only gross errors. The tests
# below compare the drawn parameters themselves, 4000 draws per side: the converted transform's recorded calls (its
# Plan's per-sample kwargs, no pixels) against the original library's own sampling (torchvision's make_params /
# albumentations' should_apply, get_params and get_params_dependent_on_data), both reduced to (functional name,
# kwargs) per sample. Per name: the fraction of samples that call it (binomial, 4 sigma: catches p off by ~0.05) and
# the count of calls per sample; per numeric argument: KS at 1e-4 (distance ~0.05) and, for continuous values, the
# same support (min and max within 2 % of the range: a range moved by more than that fails).

DRAWS = 4000


def _numbers(value) -> list[float]:
    if value is None or isinstance(value, (bool, str, torch.dtype)):
        return []
    arr = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64).ravel()
    if arr.size > 8:  # a field (elastic displacement): its spread and two entries at the centre
        return [float(arr.std()), float(arr[arr.size // 2]), float(arr[arr.size // 2 + 1])]
    return arr.tolist()


def _table(samples: list[list[tuple[str, dict]]]) -> tuple[dict, dict]:
    """Per functional name: calls per sample [n]; per 'name.arg[k]' (and 'name@': its place in the sample's calls):
    the values pooled over every call (to 6 significant digits: atoms drawn in float32 and float64 coincide). Places count
    color ops only: the geometric ops of a sample compose into one resampling that the record lists first."""
    counts: dict[str, np.ndarray] = {}
    values: dict[str, list[float]] = {}
    for i, calls in enumerate(samples):
        color = [name for name, _ in calls if name not in GEOMETRIC]
        for name, kwargs in calls:
            counts.setdefault(name, np.zeros(len(samples)))[i] += 1
            if name not in GEOMETRIC:
                values.setdefault(f"{name}@", []).append(color.index(name))
            for key, value in kwargs.items():
                for k, v in enumerate(_numbers(value)):
                    values.setdefault(f"{name}.{key}[{k}]", []).append(v)
    return counts, {k: _significant(np.asarray(v)) for k, v in values.items()}


def _significant(a: np.ndarray, digits: int = 6) -> np.ndarray:
    """``a`` rounded to ``digits`` significant digits (float32 keeps ~7)."""
    scale = 10.0 ** (np.floor(np.log10(np.where(a == 0, 1.0, np.abs(a)))) - (digits - 1))
    return np.round(a / scale) * scale


def _ours(conv, n: int = DRAWS, shape=(3, 16, 16)) -> list[list[tuple[str, dict]]]:
    """The converted transform's draws for n samples (no pixels: Compose.draw and the record's listing)."""
    from fastaug.compose import Record

    x, idx = torch.zeros(1, *shape, dtype=torch.uint8).expand(n, *shape), torch.arange(n)
    record = Record(conv.draw(x, idx, 0), conv.seed, 0, idx, (n, *shape), dtype=torch.uint8)
    return [[c for c in record.calls(i) if c[0] != "to_dtype"] for i in range(n)]


def _same_draws(ours: list, theirs: list, skip=()) -> None:
    (ca, va), (cb, vb) = _table(ours), _table(theirs)
    assert set(ca) == set(cb), f"called ops differ: {sorted(ca)} vs {sorted(cb)}"
    n, m = len(ours), len(theirs)
    for name in ca:
        fa, fb = float((ca[name] > 0).mean()), float((cb[name] > 0).mean())
        pooled = (fa * n + fb * m) / (n + m)
        assert abs(fa - fb) <= 4 * (pooled * (1 - pooled) * (1 / n + 1 / m)) ** 0.5 + 1e-9, f"{name}: applied {fa:.3f} vs {fb:.3f}"
        if ca[name].max() > 1 or cb[name].max() > 1:
            p = ks_2samp(ca[name], cb[name], method="asymp").pvalue
            assert p > 1e-4, f"{name}: calls per sample differ, KS p = {p:.2g}"
    compared = 0
    for key in sorted(set(va) & set(vb)):
        if key.split(".")[-1].split("[")[0] in skip:
            continue
        a, b = va[key], vb[key]
        compared += 1
        if np.ptp(b) < 1e-9:  # a constant: the same constant
            np.testing.assert_allclose(a, b[0], atol=1e-6, rtol=1e-6, err_msg=key)
            continue
        p = ks_2samp(a, b, method="asymp").pvalue
        assert p > 1e-4, f"{key}: KS p = {p:.2g} (ours {a.mean():.4g} +- {a.std():.3g}, theirs {b.mean():.4g} +- {b.std():.3g})"
        if not (np.all(a == np.round(a)) and np.all(b == np.round(b))) and "displacement" not in key:
            tol = 0.02 * np.ptp(b)
            support = f"{key}: support [{a.min():.4g}, {a.max():.4g}] vs [{b.min():.4g}, {b.max():.4g}]"
            assert abs(a.min() - b.min()) <= tol and abs(a.max() - b.max()) <= tol, support
    missing = {k for k in vb if k not in va and k.split(".")[-1].split("[")[0] not in skip}
    assert not missing, f"arguments drawn by the original only: {sorted(missing)}"
    assert compared or all(not kw for calls in theirs for _, kw in calls)


class _Recorder:
    """Stands in for a module of functionals (torchvision's auto-augment ``F``): records (name, kwargs), returns the
    image untouched (only the draws matter)."""

    OPS = {"affine", "rotate", "adjust_brightness", "adjust_saturation", "adjust_contrast", "adjust_sharpness", "posterize",
           "solarize", "autocontrast", "equalize", "invert"}  # fmt: skip

    def __init__(self, module):
        self.module, self.calls = module, []

    def __getattr__(self, name):
        if name not in self.OPS:
            return getattr(self.module, name)

        def record(image, **kwargs):
            self.calls.append((name, kwargs))
            return image

        return record


def _tv_calls(op, x) -> list[tuple[str, dict]]:
    """One draw of a torchvision v2 transform as (functional name, kwargs): forward's coin, then make_params."""
    n = type(op).__name__
    if n == "Compose":
        return [c for t in op.transforms for c in _tv_calls(t, x)]
    if n in ("RandAugment", "TrivialAugmentWide", "AutoAugment"):
        import torchvision.transforms.v2._auto_augment as aa

        recorder, original = _Recorder(aa.F), aa.F
        aa.F = recorder
        try:
            op(x)
        finally:
            aa.F = original
        return recorder.calls
    if n == "ToDtype":
        return []
    if hasattr(op, "p") and op.p < 1 and not torch.rand(1) < op.p:
        return []
    if n == "RandomPerspective":
        import torchvision.transforms.v2._geometry as geo

        seen, original = [], geo._get_perspective_coeffs
        geo._get_perspective_coeffs = lambda start, end: seen.append(end) or original(start, end)
        try:
            op.make_params([x])
        finally:
            geo._get_perspective_coeffs = original
        return [("perspective", {"endpoints": seen[0]})]
    params = op.make_params([x])
    if n == "ColorJitter":
        names = [("adjust_brightness", "brightness_factor"), ("adjust_contrast", "contrast_factor"),
                 ("adjust_saturation", "saturation_factor"), ("adjust_hue", "hue_factor")]  # fmt: skip
        return [(names[i][0], {names[i][1]: params[names[i][1]]}) for i in params["fn_idx"].tolist() if params[names[i][1]] is not None]
    if n == "RandomErasing":
        return [] if params["v"] is None else [("erase", {k: params[k] for k in "ijhw"})]
    a = op.__dict__.get
    fixed = {  # ops whose only draw is forward's coin: their constant arguments
        "RandomHorizontalFlip": ("horizontal_flip", {}), "RandomVerticalFlip": ("vertical_flip", {}),
        "RandomPosterize": ("posterize", {"bits": a("bits")}), "RandomSolarize": ("solarize", {"threshold": a("threshold")}),
        "RandomEqualize": ("equalize", {}), "RandomAutocontrast": ("autocontrast", {}), "RandomInvert": ("invert", {}),
        "RandomAdjustSharpness": ("adjust_sharpness", {"sharpness_factor": a("sharpness_factor")}),
        "RandomGrayscale": ("rgb_to_grayscale", {}), "GaussianNoise": ("gaussian_noise", {"mean": a("mean"), "sigma": a("sigma")}),
    }  # fmt: skip
    if n in fixed:
        return [fixed[n]]
    name = {"RandomAffine": "affine", "RandomRotation": "rotate", "RandomResizedCrop": "resized_crop", "GaussianBlur": "gaussian_blur",
            "ElasticTransform": "elastic_transform"}[n]  # fmt: skip
    return [(name, params)]


TV_DRAWN = sorted(k for k in TV_CASES if k not in ("Normalize", "ToDtype"))
TV_DRAWS = {"ElasticTransform": 300}  # torchvision blurs a noise field per draw (~20 ms)


@pytest.mark.skipif(TF is None, reason="torchvision not installed")
@pytest.mark.parametrize("name", TV_DRAWN)
def test_torchvision_op_draws_the_same_parameters(name):
    """The converted op's drawn parameters against torchvision's own draws: which ops are called, how often (its p),
    and each argument's distribution (see _same_draws)."""
    original = TV_CASES[name][0]
    n = TV_DRAWS.get(name, DRAWS)
    conv = fastaug.from_torchvision(original, backend="torch", seed=1)
    x = _image()
    torch.manual_seed(0)
    theirs = [_tv_calls(original, x) for _ in range(n)]
    _same_draws(_ours(conv, n), theirs, skip=("center", "interpolation", "fill", "key", "clip"))


class _Draws:
    """Stands in for an albumentations transform's ``py_random``: the same draws, logged (name, value)."""

    def __init__(self, rng):
        self.rng, self.log = rng, []

    def __getattr__(self, name):
        fn = getattr(self.rng, name)

        def draw(*args, **kwargs):
            value = fn(*args, **kwargs)
            self.log.append((name, value))
            return value

        return draw


def _crop(x0: int, y0: int, x1: int, y1: int) -> dict:
    return {"top": y0, "left": x0, "height": y1 - y0, "width": x1 - x0}


def _holes(params) -> list[tuple[str, dict]]:
    return [("erase", {"i": y0, "j": x0, "h": y1 - y0, "w": x1 - x0}) for x0, y0, x1, y1 in np.asarray(params["holes"]).tolist()]


def _emboss(m) -> dict:
    alpha = float(m[0, 1] - m[0, 0])  # (1 - alpha) I + alpha [[-1-s, -s, 0], [-s, 1, s], [0, s, 1+s]]
    return {"alpha": alpha, "strength": float(-m[0, 1]) / alpha}


def _motion(k: int, angle: float, direction: float, *shift: float) -> dict:
    """albumentations' shift: U(-1, 1) * line_length / 2 pixels per axis, line_length = kernel_size // 2."""
    return {"kernel_size": k, "angle": angle, "direction": direction, "shift": [u * (k // 2) / 2 for u in shift]}


def _sharpen(alpha: float, m) -> dict:
    """(1 - alpha) I + alpha [[-1, -1, -1], [-1, 8 + lightness, -1], [-1, -1, -1]]."""
    return {"alpha": alpha, "lightness": (float(m[1, 1]) - 1 + alpha) / alpha - 8}


def _uniforms(log) -> list[float]:
    return [v for name, v in log if name == "uniform"]


# case -> (albumentations params, the log of its py_random draws) -> its calls (Affine, Rotate:
# test_albumentations_geometry_draws_the_same_matrices; Normalize draws nothing)
AL_DRAWN = {} if A is None else {
    "HorizontalFlip": lambda op, p, log: [("horizontal_flip", {})],
    "VerticalFlip": lambda op, p, log: [("vertical_flip", {})],
    "InvertImg": lambda op, p, log: [("invert", {})],
    "ToGray": lambda op, p, log: [("rgb_to_grayscale", {})],
    "RandomResizedCrop": lambda op, p, log: [("resized_crop", _crop(*p["crop_coords"]))],
    "SafeRotate": lambda op, p, log: [("safe_rotate", {"angle": p["rotate"]})],
    "RGBShift": lambda op, p, log: [("rgb_shift", dict(zip(("r_shift", "g_shift", "b_shift"), p["noise_map"].tolist())))],
    "MultiplicativeNoise": lambda op, p, log: [("adjust_brightness", {"brightness_factor": float(p["multiplier"][0])})],
    "PixelDropout": lambda op, p, log: [("pixel_dropout", {"dropout_prob": op.dropout_prob, "drop_value": 0.0})],
    "SaltAndPepper": lambda op, p, log: [("salt_and_pepper", dict(zip(("amount", "salt_vs_pepper"), _uniforms(log))))],
    "Emboss": lambda op, p, log: [("emboss", _emboss(p["emboss_matrix"]))],
    "Sharpen": lambda op, p, log: [("sharpen", _sharpen(p["alpha"], p["sharpening_matrix"]))],
    "Sharpen-gaussian": lambda op, p, log: [("sharpen", {"alpha": p["alpha"], "sigma": op.sigma})],
    "MotionBlur": lambda op, p, log: [("motion_blur", _motion(p["kernel"].shape[0], *_uniforms(log)))],
    "CoarseDropout": lambda op, p, log: _holes(p),
    "XYMasking": lambda op, p, log: _holes(p),
    "GaussNoise": lambda op, p, log: [("gaussian_noise", dict(zip(("sigma", "mean"), _uniforms(log))))],
    "Posterize": lambda op, p, log: [("posterize", {"bits": p["num_bits"]})],
    "Solarize": lambda op, p, log: [("solarize", {"threshold": p["threshold"] * 255})],
}  # fmt: skip


def _al_calls(op, adapt, image: np.ndarray) -> list[tuple[str, dict]]:
    """One draw of an albumentations transform as (functional name, kwargs): should_apply, get_params,
    get_params_dependent_on_data (its __call__'s sampling, without the pixels)."""
    log = op.py_random.log
    log.clear()
    if not op.should_apply():
        return []
    data = {"image": image}
    params = op.update_transform_params(op.get_params(), data)
    params.update(op.get_params_dependent_on_data(params=params, data=data))
    log.pop(0) if log and log[0][0] == "random" and 0 < op.p < 1 else None  # should_apply's coin
    return adapt(op, params, log)


@pytest.mark.skipif(A is None, reason="albumentations not installed")
@pytest.mark.parametrize("name", sorted(AL_DRAWN))
def test_albumentations_op_draws_the_same_parameters(name):
    """The converted op's drawn parameters against albumentations' own draws (see _same_draws)."""
    import copy

    original = copy.deepcopy(AL_CASES[name][0])
    original.set_random_seed(0)
    original.py_random = _Draws(original.py_random)
    conv = fastaug.from_albumentations(AL_CASES[name][0], backend="torch", seed=1)
    image = _image().permute(1, 2, 0).numpy()
    theirs = [_al_calls(original, AL_DRAWN[name], image) for _ in range(DRAWS)]
    _same_draws(
        _ours(conv),
        theirs,
        skip=("interpolation", "fill", "key", "clip", "v", "per_channel", "method", "kernel_size" if name == "Sharpen-gaussian" else "-"),
    )


# ------------------------------------------------------------------------------------------- dropout and masking pixels
#
# The fixed-parameter pairs of CoarseDropout / XYMasking (one hole as large as the image) and PixelDropout /
# SaltAndPepper (probability 1) give constant images: they check fill values only. Here: albumentations' own holes
# replayed through fastaug.functional.erase (the same pixels), and the per-pixel ops' structure and rates.


@pytest.mark.skipif(A is None, reason="albumentations not installed")
@pytest.mark.parametrize("name", ["CoarseDropout", "XYMasking"])
def test_albumentations_holes_replayed_through_fastaug_erase(name):
    """Each hole albumentations drew (x0, y0, x1, y1; half-open) painted by fastaug.functional.erase gives
    albumentations' pixels, on a 13x17 image with holes of several sizes, and the converted op paints the same way."""
    op = {
        "CoarseDropout": A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(2, 6), hole_width_range=(3, 7), fill=9, p=1.0),
        "XYMasking": A.XYMasking(num_masks_x=(1, 2), mask_x_length=(2, 5), num_masks_y=(1, 2), mask_y_length=(1, 4), fill=9, p=1.0),
    }[name]
    op.set_random_seed(0)
    x = torch.randint(10, 256, (3, 13, 17), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sizes = set()
    for _ in range(8):
        theirs = _al(op, x)
        ours = x[None]
        for x0, y0, x1, y1 in np.asarray(op.params["holes"]).tolist():
            ours = fastaug.functional.erase(ours, y0, x0, y1 - y0, x1 - x0, 9, backend="torch")
            sizes.add((y1 - y0, x1 - x0))
        assert torch.equal(ours[0], theirs)
        assert 0 < int((theirs == 9).all(0).sum()) < 13 * 17  # some pixels painted, not all
    assert len(sizes) >= 4
    conv = fastaug.from_albumentations(op, backend="torch", seed=2)
    y, record = conv(x.expand(6, *x.shape).contiguous(), indices=torch.arange(6), return_record=True)
    for i in range(6):
        replay = x[None]
        for op_name, kwargs in record.calls(i):
            assert op_name == "erase"
            replay = fastaug.functional.erase(replay, kwargs["i"], kwargs["j"], kwargs["h"], kwargs["w"], 9, backend="torch")
        assert torch.equal(replay[0], y[i]) and 0 < int((y[i] == 9).all(0).sum()) < 13 * 17


@pytest.mark.skipif(A is None, reason="albumentations not installed")
@pytest.mark.parametrize("per_channel", [False, True])
def test_albumentations_pixel_dropout_structure_and_rate(per_channel):
    """dropout_prob 0.25 on 8 64x64 images: every pixel is kept or set to the drop value (all channels together unless
    per_channel), and the dropped fraction matches albumentations' (binomial, 4 sigma each)."""
    op = A.PixelDropout(dropout_prob=0.25, per_channel=per_channel, drop_value=7, p=1.0)
    op.set_random_seed(0)
    x = torch.randint(10, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ours = fastaug.from_albumentations(op, backend="torch", seed=2)(x.expand(8, *x.shape).contiguous(), indices=torch.arange(8))
    theirs = torch.stack([_al(op, x) for _ in range(8)])
    for out in (ours, theirs):
        dropped = out == 7
        assert torch.equal(torch.where(dropped, x, out), x.expand_as(out))  # kept pixels unchanged
        mixed = dropped.any(1) & ~dropped.all(1)
        assert bool(mixed.any()) == per_channel
        rate, n = float(dropped.float().mean()), dropped.numel() if per_channel else dropped[:, 0].numel()
        assert abs(rate - 0.25) < 4 * (0.25 * 0.75 / n) ** 0.5, rate


@pytest.mark.skipif(A is None, reason="albumentations not installed")
def test_albumentations_salt_and_pepper_structure_and_rates():
    """amount 0.2, salt_vs_pepper 0.3 on 8 64x64 images: hit pixels are white or black in every channel, the rest
    unchanged; the hit fraction and the salt share match albumentations' (which draws exactly int(H*W*amount) pixels)."""
    op = A.SaltAndPepper(amount=(0.2, 0.2), salt_vs_pepper=(0.3, 0.3), p=1.0)
    op.set_random_seed(0)
    x = torch.randint(1, 255, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ours = fastaug.from_albumentations(op, backend="torch", seed=2)(x.expand(8, *x.shape).contiguous(), indices=torch.arange(8))
    theirs = torch.stack([_al(op, x) for _ in range(8)])
    for out in (ours, theirs):
        salt, pepper = (out == 255).all(1), (out == 0).all(1)
        hit = salt | pepper
        assert torch.equal(torch.where(hit[:, None], x, out), x.expand_as(out))  # everything else unchanged
        n = hit.numel()
        assert abs(float(hit.float().mean()) - 0.2) < 4 * (0.2 * 0.8 / n) ** 0.5
        share, m = float(salt.sum() / hit.sum()), int(hit.sum())
        assert abs(share - 0.3) < 4 * (0.3 * 0.7 / m) ** 0.5, share


# ------------------------------------------------------------------------------------------- saved as JSON


def _round_trip(conv, tmp_path, x: torch.Tensor, name: str = "p.json"):
    """``conv`` written with its to_json, read with fastaug.load: the same document and the same outputs, bit for bit."""
    import json

    from fastaug import serialize as Z

    path = conv.to_json(tmp_path / name)
    back = fastaug.load(path)
    assert type(back) is type(conv)
    assert json.loads(json.dumps(Z.to_dict(back))) == json.loads(path.read_text())["pipeline"]
    for epoch in (0, 3):
        idx = torch.arange(5, 5 + x.shape[0])
        ours, theirs = conv(x, indices=idx, epoch=epoch), back(x, indices=idx, epoch=epoch)
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs)
    return back


def _batch(float_image: bool = False) -> torch.Tensor:
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return x.float() / 255 if float_image else x


@pytest.mark.skipif(TF is None, reason="torchvision not installed")
@pytest.mark.parametrize("name", sorted(TV_CASES))
def test_converted_torchvision_ops_round_trip_through_json(name, tmp_path):
    for i, op in enumerate(TV_CASES[name]):
        if op is not None:
            _round_trip(fastaug.from_torchvision(op, seed=3), tmp_path, _batch(), f"{i}.json")


@pytest.mark.skipif(A is None, reason="albumentations not installed")
@pytest.mark.parametrize("name", sorted(AL_CASES))
def test_converted_albumentations_ops_round_trip_through_json(name, tmp_path):
    for i, op in enumerate(AL_CASES[name]):
        _round_trip(fastaug.from_albumentations(op, seed=3), tmp_path, _batch(name in FLOAT_AL), f"{i}.json")


SAMPLER_CASES = {} if A is None else {  # each class of the converter's own: an op converted to it, uint8 and float images
    "WithProbability": [A.Rotate(limit=(-60, 20), p=0.6), A.GaussNoise(std_range=(0.05, 0.2), mean_range=(-0.05, 0.1), p=0.7)],
    "AlbumentationsPosterize": [A.Posterize(num_bits=(1, 6), p=0.7)],
    "AlbumentationsSolarize": [A.Solarize(threshold_range=(0.2, 0.9), p=0.7), A.Solarize(threshold_range=((51 + 1e-9) / 255,) * 2, p=1.0)],
    "AlbumentationsAffine": [AL_CASES["Affine"][0], AL_CASES["Affine-balanced-keep-ratio-nearest"][0],
                             A.Affine(translate_px={"x": (-3, 2), "y": (1, 4)}, fill=(10, 20, 30), p=1.0)],
}  # fmt: skip


@pytest.mark.skipif(A is None, reason="albumentations not installed")
@pytest.mark.parametrize("name", sorted(SAMPLER_CASES))
def test_every_converter_sampler_round_trips_through_json(name, tmp_path):
    from fastaug import convert, serialize

    assert set(SAMPLER_CASES) == set(serialize._CONVERTER_SAMPLERS)
    for i, op in enumerate(SAMPLER_CASES[name]):
        conv = fastaug.from_albumentations(A.Compose([A.HorizontalFlip(p=0.5), op]), seed=11)
        assert type(conv.transforms[-1]) is getattr(convert, name)
        for float_image in (False, True):
            _round_trip(conv, tmp_path, _batch(float_image), f"{i}.json")


@pytest.mark.skipif(A is None, reason="albumentations not installed")
def test_with_probability_of_a_policy_round_trips_through_json(tmp_path):
    from fastaug.convert import WithProbability

    markov = fastaug.MarkovPolicy.from_autoaugment()
    conv = fastaug.Compose([WithProbability(fastaug.RandAugment(2, 9), 0.4), WithProbability(markov, 0.7)], seed=2)
    _round_trip(conv, tmp_path, _batch())


@pytest.mark.skipif(TF is None or A is None, reason="torchvision or albumentations not installed")
def test_pipelines_with_fallback_ops_round_trip_through_json(tmp_path):
    IM = V.InterpolationMode
    tv_pipe = fastaug.from_torchvision(V.Compose([
        V.RandomHorizontalFlip(), V.RandomCrop(12, padding=2, fill=3), V.RandomInvert(0.5), V.Resize(10, interpolation=IM.NEAREST),
        V.RandomApply([V.ColorJitter(0.3)], p=0.5), V.RandomChoice([V.RandomInvert(1.0), V.RandomVerticalFlip(1.0)], p=[0.3, 0.7]),
    ]), fallback=True, seed=4)  # fmt: skip
    al_pipe = fastaug.from_albumentations(A.Compose([
        A.HorizontalFlip(), A.CenterCrop(12, 12), A.Equalize(p=0.5), A.RandomBrightnessContrast(p=0.7), A.Posterize(num_bits=(2, 5)),
    ]), fallback=True, seed=5)  # fmt: skip
    for i, pipe in enumerate((tv_pipe, al_pipe)):
        assert isinstance(pipe, fastaug.Pipeline)
        back = _round_trip(pipe, tmp_path, _batch(), f"{i}.json")
        assert repr(back) == repr(pipe)
    lam = fastaug.from_torchvision(V.Compose([V.Lambda(lambda x: x), V.RandomInvert(1.0)]), fallback=True)
    with pytest.raises(TypeError, match="cannot write"):
        lam.to_json(tmp_path / "lambda.json")
