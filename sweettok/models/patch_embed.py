"""Causal video patch embedding and its inverse.

Frame 0 is cut into p×p patches, frames 1..T−1 into t×p×p tubes, so a clip of T = 1 + k·t
frames becomes T' = 1 + k latent frames on an (H/p)×(W/p) grid; the first latent frame depends
on frame 0 only. Patches flatten as (channel, row, col), tubes as (channel, frame, row, col),
matching the OmniTokenizer weights.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn
import torch


def latent_frames(num_frames: int, temporal_patch_size: int) -> int:
    """T' = 1 + (T − 1)/t; error when T − 1 is not a multiple of t."""
    if num_frames < 1 or (num_frames - 1) % temporal_patch_size:
        raise ValueError(f"clip length {num_frames}: (T - 1) must be a multiple of the temporal patch "
                         f"size {temporal_patch_size} (e.g. 17 frames for tube 4)")
    return 1 + (num_frames - 1) // temporal_patch_size


class PatchProjection(nn.Module):
    """LayerNorm(patch) → Linear(patch → D) → LayerNorm(D); ``input_norm`` / ``output_norm`` False drop a norm.

    Both norms are the published layout, and both hide a flat patch's colour: the first removes each
    raw patch's mean and contrast (a flat grey patch becomes zeros, or amplified codec noise); the
    second is blind to the scale c of Linear(c·1) = c·W1 while the bias is still ~0 (from scratch).
    """

    def __init__(self, patch_dim: int, dim: int, input_norm: bool = True, output_norm: bool = True) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(patch_dim) if input_norm else nn.Identity()
        self.proj = nn.Linear(patch_dim, dim)
        self.norm_out = nn.LayerNorm(dim) if output_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.norm_out(self.proj(self.norm_in(x)))


class CausalPatchEmbed(nn.Module):
    """Video (B, C, T, H, W) → tokens (B, T', H/p, W/p, D); first frame alone, then t-frame tubes."""

    def __init__(self, dim: int, patch_size: int, temporal_patch_size: int, in_channels: int = 3,
                 input_norm: bool = True, output_norm: bool = True) -> None:
        super().__init__()
        self.patch_size, self.temporal_patch_size, self.in_channels = patch_size, temporal_patch_size, in_channels
        self.first_frame = PatchProjection(in_channels * patch_size ** 2, dim, input_norm, output_norm)
        self.tubes = PatchProjection(in_channels * temporal_patch_size * patch_size ** 2, dim, input_norm, output_norm)

    def forward(self, video: Tensor) -> Tensor:
        """video: (B, C, T, H, W) with (T−1) % t == 0 and H, W divisible by p."""
        b, c, t, h, w = video.shape
        p = self.patch_size
        if c != self.in_channels or h % p or w % p:
            raise ValueError(f"patch embed: expected (B, {self.in_channels}, T, H, W) with H, W divisible "
                             f"by {p}, got {tuple(video.shape)}")
        latent_frames(t, self.temporal_patch_size)
        first = rearrange(video[:, :, :1], "b c 1 (h p1) (w p2) -> b 1 h w (c p1 p2)", p1=p, p2=p)
        tokens = [self.first_frame(first)]  # (B, 1, h, w, D)
        if t > 1:
            rest = rearrange(video[:, :, 1:], "b c (t pt) (h p1) (w p2) -> b t h w (c pt p1 p2)",
                             pt=self.temporal_patch_size, p1=p, p2=p)
            tokens.append(self.tubes(rest))  # (B, T'-1, h, w, D)
        return torch.cat(tokens, dim=1)


class CausalPatchUnembed(nn.Module):
    """Tokens (B, T', h, w, D) → video (B, C, 1 + (T'−1)·t, h·p, w·p); the inverse layout of the embed."""

    def __init__(self, dim: int, patch_size: int, temporal_patch_size: int, in_channels: int = 3) -> None:
        super().__init__()
        self.patch_size, self.temporal_patch_size, self.in_channels = patch_size, temporal_patch_size, in_channels
        self.first_frame = nn.Linear(dim, in_channels * patch_size ** 2)
        self.tubes = nn.Linear(dim, in_channels * temporal_patch_size * patch_size ** 2)

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens: (B, T', h, w, D) → (B, C, T, H, W), unbounded values."""
        p, c = self.patch_size, self.in_channels
        frames = [rearrange(self.first_frame(tokens[:, :1]), "b 1 h w (c p1 p2) -> b c 1 (h p1) (w p2)",
                            c=c, p1=p, p2=p)]
        if tokens.shape[1] > 1:
            frames.append(rearrange(self.tubes(tokens[:, 1:]), "b t h w (c pt p1 p2) -> b c (t pt) (h p1) (w p2)",
                                    c=c, pt=self.temporal_patch_size, p1=p, p2=p))
        return torch.cat(frames, dim=2)
