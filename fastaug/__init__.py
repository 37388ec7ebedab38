"""fastaug: per-sample image augmentation as one fused batch pass."""

__version__ = "0.1.0"
