"""fastaug: per-sample image augmentation as one fused batch pass (Triton on GPU, Numba on CPU)."""

from fastaug import functional
from fastaug.compose import Compose, Record
from fastaug.policies import AutoAugment, RandAugment, TrivialAugmentWide
from fastaug.transforms import (
    ColorJitter,
    GaussianBlur,
    Normalize,
    RandomAdjustSharpness,
    RandomAffine,
    RandomAutocontrast,
    RandomEqualize,
    RandomErasing,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomInvert,
    RandomPerspective,
    RandomPosterize,
    RandomResizedCrop,
    RandomRotation,
    RandomSolarize,
    RandomVerticalFlip,
    ToDtype,
    Transform,
    XYMasking,
)

__version__ = "0.1.0"

__all__ = [
    "functional", "Compose", "Record", "Transform", "ColorJitter", "GaussianBlur", "Normalize", "RandomAdjustSharpness",
    "RandomAffine", "RandomAutocontrast", "RandomEqualize", "RandomErasing", "RandomGrayscale",
    "RandomHorizontalFlip", "RandomInvert", "RandomPerspective", "RandomPosterize", "RandomResizedCrop",
    "RandomRotation", "RandomSolarize", "RandomVerticalFlip", "ToDtype", "XYMasking",
    "RandAugment", "TrivialAugmentWide", "AutoAugment",
]  # fmt: skip
