"""Automatic augmentation policies, drawn per sample: RandAugment, TrivialAugmentWide, AutoAugment."""

from fastaug.policies.auto import AutoAugment, PolicyDraw, RandAugment, TrivialAugmentWide, subpolicies

__all__ = ["AutoAugment", "PolicyDraw", "RandAugment", "TrivialAugmentWide", "subpolicies"]
