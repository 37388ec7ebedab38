"""Image bytes each CUDA call moves (``cuda_bytes.py``, counted from its launches on fake CUDA tensors) against the
compulsory bytes: ceilings against regressions (the goal of issue 12: <= 1.5x for every pipeline)."""

from __future__ import annotations

import pytest
from cuda_bytes import count

# moved / compulsory measured on 2026-12-02 (uint8 intermediates; ColorJitter's single statistics round; SHARPNESS
# folded in: plan.Fold, its buffers written and read by the samples that sharpen only)
CEILING = {
    "reference pipeline": 1.34,
    "blur-noise pipeline": 2.0,
    "RandAugment + Normalize": 1.18,
    "TrivialAugmentWide + Normalize": 1.09,
    "AutoAugment + Normalize": 1.14,
    "MarkovPolicy(length=3) + Normalize": 1.19,
    "XYMasking + RandomErasing": 1.0,
    "ElasticTransform + RandomFog": 2.08,
}


@pytest.mark.parametrize("name", list(CEILING))
def test_bytes_moved_per_image(name):
    c = count(name)
    assert 1.0 <= c["ratio"] <= CEILING[name] + 1e-9, c
    assert c["read"] > 0 and c["written"] > 0
