"""Losses: stage-1 cross-entropy, stage-0/2 reconstruction + perceptual + 3-D GAN (+LeCam)."""

from sweettok.losses.gan import (
    LeCamEMA,
    adaptive_weight,
    feature_matching_loss,
    hinge_discriminator_loss,
    hinge_generator_loss,
)
from sweettok.losses.perceptual import build_perceptual_loss, cached_hub_checkpoint
from sweettok.losses.reconstruction import ReconstructionGANLoss, pixel_reconstruction_loss
from sweettok.losses.stage1 import Stage1Loss

__all__ = [
    "LeCamEMA",
    "ReconstructionGANLoss",
    "Stage1Loss",
    "adaptive_weight",
    "build_perceptual_loss",
    "cached_hub_checkpoint",
    "feature_matching_loss",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "pixel_reconstruction_loss",
]
