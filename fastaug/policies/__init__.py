"""Automatic augmentation policies, drawn per sample: RandAugment, TrivialAugmentWide, AutoAugment, MarkovPolicy."""

from fastaug.policies.auto import AutoAugment, PolicyDraw, RandAugment, TrivialAugmentWide, subpolicies
from fastaug.policies.markov import MarkovPolicy

__all__ = ["AutoAugment", "MarkovPolicy", "PolicyDraw", "RandAugment", "TrivialAugmentWide", "subpolicies"]
