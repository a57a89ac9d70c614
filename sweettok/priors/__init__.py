"""priors sub-package."""
