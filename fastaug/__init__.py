"""fastaug: per-sample image augmentation as one fused batch pass (Triton on GPU, Numba on CPU)."""

from fastaug import functional
from fastaug.compose import Compose, Record
from fastaug.convert import Pipeline, from_albumentations, from_torchvision
from fastaug.policies import AutoAugment, MarkovPolicy, RandAugment, SubPolicies, TrivialAugmentWide
from fastaug.serialize import load
from fastaug.transforms import (
    Clouds,
    CoarseDropout,
    ColorJitter,
    Downscale,
    ElasticTransform,
    Emboss,
    GaussianBlur,
    GaussianNoise,
    MotionBlur,
    MultiplicativeNoise,
    Normalize,
    PixelDropout,
    RandomAdjustSharpness,
    RandomAffine,
    RandomAutocontrast,
    RandomEqualize,
    RandomErasing,
    RandomFog,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomInvert,
    RandomPerspective,
    RandomPosterize,
    RandomResizedCrop,
    RandomRotation,
    RandomSolarize,
    RandomVerticalFlip,
    RGBGain,
    RGBShift,
    SafeRotate,
    SaltAndPepper,
    Sharpen,
    Superpixels,
    ToDtype,
    Transform,
    XYMasking,
)

__version__ = "0.1.0"

__all__ = [
    "functional", "Compose", "Record", "Transform", "ColorJitter", "GaussianBlur", "GaussianNoise", "MotionBlur",
    "Sharpen", "Emboss", "PixelDropout", "SaltAndPepper", "MultiplicativeNoise", "Normalize", "RandomAdjustSharpness",
    "RandomAffine", "RandomAutocontrast", "RandomEqualize", "RandomErasing", "RandomGrayscale",
    "RandomHorizontalFlip", "RandomInvert", "RandomPerspective", "RandomPosterize", "RandomResizedCrop",
    "RandomRotation", "RandomSolarize", "RandomVerticalFlip", "ToDtype", "XYMasking",
    "RandAugment", "TrivialAugmentWide", "AutoAugment", "MarkovPolicy", "SubPolicies", "SafeRotate", "CoarseDropout",
    "RGBShift", "RGBGain", "RandomFog", "Clouds", "Downscale", "ElasticTransform", "Superpixels",
    "Pipeline", "from_torchvision", "from_albumentations", "load",
]  # fmt: skip
