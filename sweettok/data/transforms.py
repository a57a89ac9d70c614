"""Clip transforms on the few decoded frames: crop/resize, flip, normalisation.

``crop`` mode: resize the shorter edge to ``resolution`` and crop a square (random when training
with ``random_crop``, centred otherwise). It is computed as "crop the largest square in source
pixels, then resize that square", which gives the same picture while resizing fewer pixels.
``squash`` mode reproduces the original: every frame resized straight to ``resolution``²
ignoring the aspect ratio. Resizing is bilinear with antialiasing (a convex filter, so values
stay in [0, 255]). Normalisation: ``(x / 255 - mean) / std`` (defaults give [-0.5, 0.5]).

The hot path stays in uint8 and runs once over the whole clip: the crop is a view, the resize is
one batched ``F.interpolate`` on the (T, 3, H, W) channels-last uint8 view of the decoded frames
(torch's vectorised uint8 kernel: fixed-point weights, result rounded to a level, within one level
of the float filter), the flip runs on uint8, and a single copy converts to float32 in the output
(C, T, H, W) layout before the in-place normalisation. Frames of another dtype take the float path.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange

RESIZE_MODES = ("crop", "squash")


class VideoTransform:
    """uint8 frames (T, H, W, 3) -> normalised float clip (3, T, resolution, resolution)."""

    def __init__(
        self,
        resolution: int,
        resize_mode: str = "crop",
        random_crop: bool = False,
        random_flip: bool = False,
        mean: float = 0.5,
        std: float = 1.0,
    ):
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"dataset.resize_mode must be one of {RESIZE_MODES}, got '{resize_mode}'")
        if std <= 0:
            raise ValueError(f"dataset.std must be positive, got {std}")
        self.resolution = resolution
        self.resize_mode = resize_mode
        self.random_crop = random_crop
        self.random_flip = random_flip
        self.mean = mean
        self.std = std

    def crop_box(self, height: int, width: int, generator: Optional[torch.Generator] = None) -> tuple[int, int, int]:
        """(top, left, side) of the square taken from an H x W frame."""
        side = min(height, width)
        if self.random_crop:
            top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
        else:
            top, left = (height - side) // 2, (width - side) // 2
        return top, left, side

    def __call__(self, frames: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Apply crop/resize, flip and normalisation; returns float32 (C, T, H, W)."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected frames (T, H, W, 3), got shape {tuple(frames.shape)}")
        x = rearrange(frames, "t h w c -> t c h w")  # (T, 3, H, W), a channels-last view
        if x.dtype != torch.uint8:
            x = x.float()
        height, width = x.shape[-2:]
        if self.resize_mode == "crop":
            top, left, side = self.crop_box(height, width, generator)
            x = x[..., top : top + side, left : left + side]
        size = (self.resolution, self.resolution)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            if x.is_floating_point():
                x = x.clamp_(0.0, 255.0)  # float rounding only; the filter itself is convex
        if self.random_flip and bool(torch.rand((), generator=generator) < 0.5):
            x = x.flip(-1)
        out = torch.empty((x.shape[1], x.shape[0], *x.shape[2:]), dtype=torch.float32, device=x.device)  # (3, T, res, res)
        out.copy_(rearrange(x, "t c h w -> c t h w"))  # one pass: dtype and layout
        out.div_(255.0).sub_(self.mean)
        return out if self.std == 1.0 else out.div_(self.std)  # x / 1.0 == x: skip the pass
