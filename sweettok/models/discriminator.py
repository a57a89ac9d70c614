"""3-D PatchGAN discriminator for stage 0 and stage 2 (the original's ``NLayerDiscriminator3D``).

Layout for ``channels=64, layers=3`` (every conv k4, padding 2):

    Conv3d s2 (3 -> 64) + LeakyReLU
    Conv3d s2 (64 -> 128) + norm + LeakyReLU
    Conv3d s2 (128 -> 256) + norm + LeakyReLU
    Conv3d s1 (256 -> 512) + norm + LeakyReLU
    Conv3d s1 (512 -> 1)                        -> logits, (B, 1, 5, 35, 35) for a 17x256x256 clip

The original also put BatchNorm + LeakyReLU after the last conv, i.e. on the logits, which squashes
negative logits and renormalises them per batch; here the last conv is left bare (the usual
PatchGAN). For multi-GPU runs the trainer converts ``batch`` norm layers with
``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` (as the original used SyncBN).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sweettok.config import DiscriminatorConfig

NORMS = ("batch", "group", "none")


def _norm_layer(cfg: DiscriminatorConfig, channels: int) -> nn.Module:
    """The normalisation named by ``cfg.norm`` for ``channels`` feature maps."""
    if cfg.norm == "batch":
        return nn.BatchNorm3d(channels)
    if cfg.norm == "group":
        return nn.GroupNorm(math.gcd(cfg.norm_groups, channels), channels)
    return nn.Identity()


class NLayerDiscriminator3D(nn.Module):
    """3-D PatchGAN: a clip (B, C, T, H, W) -> patch logits and the intermediate feature maps."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        if cfg.norm not in NORMS:
            raise ValueError(f"model.discriminator.norm: expected one of {NORMS}, got '{cfg.norm}'")
        if cfg.layers < 1:
            raise ValueError(f"model.discriminator.layers: expected >= 1, got {cfg.layers}")
        self.cfg = cfg
        kernel, padding = cfg.kernel_size, math.ceil((cfg.kernel_size - 1) / 2)
        use_bias = cfg.norm == "none"  # a bias before batch/group norm is cancelled by it

        def width(n: int) -> int:
            return cfg.channels * min(2**n, cfg.max_channel_multiplier)

        blocks = [
            nn.Sequential(
                nn.Conv3d(cfg.in_channels, cfg.channels, kernel, stride=2, padding=padding),
                nn.LeakyReLU(cfg.negative_slope),
            )
        ]
        # layers-1 strided blocks, then one stride-1 block, all normed
        for n in range(1, cfg.layers + 1):
            stride = 2 if n < cfg.layers else 1
            blocks.append(
                nn.Sequential(
                    nn.Conv3d(width(n - 1), width(n), kernel, stride=stride, padding=padding, bias=use_bias),
                    _norm_layer(cfg, width(n)),
                    nn.LeakyReLU(cfg.negative_slope),
                )
            )
        self.blocks = nn.ModuleList(blocks)
        self.to_logits = nn.Conv3d(width(cfg.layers), 1, kernel, stride=1, padding=padding)
        self.reset_parameters()

    @property
    def num_features(self) -> int:
        """How many intermediate feature maps ``forward`` returns."""
        return len(self.blocks)

    def reset_parameters(self) -> None:
        """PatchGAN init: conv weights N(0, std), biases 0; norm scales N(1, std), shifts 0."""
        std = self.cfg.init_std
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.normal_(module.weight, 0.0, std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm3d, nn.GroupNorm)):
                nn.init.normal_(module.weight, 1.0, std)
                nn.init.zeros_(module.bias)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """video (B, C, T, H, W) -> (logits (B, 1, T', H', W'), [feature maps of each block])."""
        if video.ndim != 5 or video.shape[1] != self.cfg.in_channels:
            raise ValueError(
                f"discriminator input: expected (B, {self.cfg.in_channels}, T, H, W), got {tuple(video.shape)}"
            )
        features = []
        x = video
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return self.to_logits(x), features
