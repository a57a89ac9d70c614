"""Per-layer building blocks besides attention: the PEG positional conv and the GEGLU feed-forward.

Attention layers live in ``sweettok.models.attention``; the block-string stack in
``sweettok.models.transformer``. Re-exported here so one import gives every block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from sweettok.models.attention import (  # noqa: F401  (re-exports)
    Attention,
    GainLayerNorm,
    UnusedPositionBias,
    WindowAttention,
    apply_rope,
    rope_angles_2d,
)

PEG_LAYOUTS = ("original", "correct")
SEQUENCE_AXES = ("space", "time")


class DepthwiseConv3dCPU(torch.autograd.Function):
    """Depthwise valid Conv3d (groups = channels) whose backward is two more forward convolutions.

    PyTorch's CPU backward of a depthwise Conv3d is slow: at the demo's PEG size (8, 64, 5, 8, 8) it
    takes ~30x the forward. Here the input gradient is the full correlation of the output gradient
    with the flipped kernel (in channels-last, where oneDNN's depthwise kernel is fast for this
    shape) and the weight gradient a depthwise Conv3d over the (clip x channel) planes with the
    output gradient as kernel, summed over the clips. Forward + backward, median CPU time, one
    thread (``python benchmarks/bench_tokenizer.py --skip-paper --skip-demo --skip-efficiency --peg
    --threads 1``): 11.5 -> 6.1 ms at the demo's size, 160 -> 98 ms at the paper's (1, 512, 5, 32, 32);
    the demo stage-1 step (batch 8, nine PEGs) 483 -> 425 ms. Gradients within fp32 rounding of
    autograd's (relative 3e-7 to 2e-6, tested); the forward is the plain path's call.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv3d(x, weight, bias, groups=weight.shape[0])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()  # (B, C, T, H, W)
        (b, c, t, h, w), k = grad.shape, weight.shape[2:]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            full = F.pad(grad, (k[2] - 1,) * 2 + (k[1] - 1,) * 2 + (k[0] - 1,) * 2)
            full = full.contiguous(memory_format=torch.channels_last_3d)
            grad_x = F.conv3d(full, weight.flip(2, 3, 4), groups=c).contiguous()
        if ctx.needs_input_grad[1]:
            planes = x.reshape(1, b * c, *x.shape[2:])  # every (clip, channel) plane its own group
            grad_weight = F.conv3d(planes, grad.reshape(b * c, 1, t, h, w), groups=b * c)
            grad_weight = grad_weight.reshape(b, c, *k).sum(0).unsqueeze(1)  # (C, 1, kT, kH, kW)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum((0, 2, 3, 4))
        return grad_x, grad_weight, grad_bias


def depthwise_conv3d(x: Tensor, conv: nn.Conv3d) -> Tensor:
    """``conv(x)`` for a depthwise, unpadded ``conv``; on a CPU in fp32 with grad, the fast backward above.

    Elsewhere (GPUs, autocast, no grad) the plain call, so those numerics are untouched.
    """
    fast = (x.device.type == "cpu" and torch.is_grad_enabled() and x.dtype == conv.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and (x.requires_grad or conv.weight.requires_grad))
    return DepthwiseConv3dCPU.apply(x, conv.weight, conv.bias) if fast else conv(x)


class PEG(nn.Module):
    """Positional encoding generator: depthwise 3×3×3 Conv3d over the (T, H, W) token grid.

    The caller adds it as a residual. Spatial padding is 1; temporal padding is (2, 0) zeros when
    ``causal`` (a token sees its own and the two previous frames) and (1, 1) otherwise.

    ``layout`` says how tokens are put back on the grid:
      * ``"correct"``: tokens grouped over space ``((B T), (H W), D)`` or over time
        ``((B H W), T, D)`` (``axis``) are rearranged to ``(B, T, H, W, D)`` properly.
      * ``"original"``: OmniTokenizer's raw row-major reshape to ``(B, T, H, W, D)`` whatever the
        grouping; inside time-grouped stacks this scrambles the grid. The published weights were
        trained with it, so modules that load them must use it; identical to "correct" for space.
    """

    def __init__(self, dim: int, causal: bool = True, layout: str = "correct", axis: str = "space") -> None:
        super().__init__()
        if layout not in PEG_LAYOUTS:
            raise ValueError(f"PEG layout must be one of {PEG_LAYOUTS}, got {layout!r}")
        if axis not in SEQUENCE_AXES:
            raise ValueError(f"sequence axis must be one of {SEQUENCE_AXES}, got {axis!r}")
        self.causal, self.layout, self.axis = causal, layout, axis
        self.conv = nn.Conv3d(dim, dim, kernel_size=3, groups=dim)

    def forward(self, x: Tensor, video_shape: tuple[int, int, int, int]) -> Tensor:
        """x: tokens (B', N, D); video_shape: (B, T, H, W). Returns the conv output, same shape as x."""
        b, t, h, w = video_shape
        if x.shape[0] * x.shape[1] != b * t * h * w:
            raise ValueError(f"PEG: tokens {tuple(x.shape)} do not fit video_shape {tuple(video_shape)}")
        if self.layout == "correct" and self.axis == "time":
            grid = rearrange(x, "(b h w) t d -> b d t h w", b=b, h=h, w=w)
        else:
            grid = rearrange(x.reshape(b, t, h, w, -1), "b t h w d -> b d t h w")
        pad_t = (2, 0) if self.causal else (1, 1)
        grid = F.pad(grid, (1, 1, 1, 1, *pad_t))  # (W, H, T) pairs
        out = depthwise_conv3d(grid, self.conv)  # (B, D, T, H, W)
        if self.layout == "correct" and self.axis == "time":
            return rearrange(out, "b d t h w -> (b h w) t d")
        return rearrange(out, "b d t h w -> b t h w d").reshape(x.shape)


class FeedForward(nn.Module):
    """LayerNorm → Linear(D, 2·inner, no bias) → GEGLU (value · GELU(gate)) → Linear(inner, D, no bias).

    inner = int(mult · 2/3 · D) (1365 for D=512, mult 4), as in the published weights.
    """

    def __init__(self, dim: int, mult: float = 4.0) -> None:
        super().__init__()
        inner = int(mult * 2 / 3 * dim)
        self.norm = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, 2 * inner, bias=False)
        self.proj_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: (..., D) → (..., D) (no residual)."""
        value, gate = self.proj_in(self.norm(x)).chunk(2, dim=-1)
        return self.proj_out(value * F.gelu(gate))


LINEAR_INITS = ("original", "fan_in")


def init_weights(module: nn.Module, linear_init: str = "original") -> None:
    """Init used for training from scratch: trunc-normal Linear, zero bias, LayerNorm (1, 0).

    ``linear_init="original"``: std 0.02 for every Linear, as the original. ``"fan_in"``: std
    ``in_features ** -0.5``, which keeps a signal's scale through a layer at any width (0.02 does so
    only at width 2,500: at width 512 it shrinks a signal 0.45x per layer, at 64 by 0.16x).
    Apply with ``model.apply(partial(init_weights, linear_init=...))``; PEG convs and gain-only norms
    keep their defaults.
    """
    if linear_init not in LINEAR_INITS:
        raise ValueError(f"linear_init must be one of {LINEAR_INITS}, got {linear_init!r}")
    if isinstance(module, nn.Linear):
        std = 0.02 if linear_init == "original" else module.in_features ** -0.5
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
