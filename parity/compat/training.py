"""`parity.training` of the earlier layout: the training checks, now under percepiano_parity.checks.training."""

from percepiano_parity.checks.training import cases, data, recipe, trajectory
from percepiano_parity.checks.training.suite import checks_for

data_check = data
recipe_check = recipe

__all__ = ["cases", "checks_for", "data_check", "recipe_check", "trajectory"]
