"""Automatic augmentation policies, drawn per sample: RandAugment, TrivialAugmentWide, AutoAugment, MarkovPolicy,
SubPolicies (a found policy)."""

from fastaug.policies.auto import AutoAugment, PolicyDraw, RandAugment, TrivialAugmentWide, subpolicies
from fastaug.policies.markov import MarkovPolicy
from fastaug.policies.sub_policies import SubPolicies

__all__ = ["AutoAugment", "MarkovPolicy", "PolicyDraw", "RandAugment", "SubPolicies", "TrivialAugmentWide", "subpolicies"]
