"""Policy search: Bayesian (scikit-optimize) or random search over sub-policies, child trainings as rewards."""

from fastaug.search.bayesian import BayesianSearch, Trial
from fastaug.search.reward import reward

__all__ = ["BayesianSearch", "Trial", "reward"]
