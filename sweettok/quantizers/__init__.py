"""quantizers sub-package."""
