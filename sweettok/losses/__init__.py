"""losses sub-package."""
