"""Attention layers of the OmniTokenizer / SweetTok transformers.

* ``GainLayerNorm``: LayerNorm with a learned gain and a fixed zero bias (a stored buffer).
* ``Attention``: pre-LN cosine-similarity attention (self or cross), learned null key/values,
  optional 2-D axial RoPE and causal mask, computed with ``F.scaled_dot_product_attention``.
* ``WindowAttention``: Swin-style non-overlapping window attention with a relative-position bias.
* ``UnusedPositionBias``: holds the never-applied continuous position-bias MLP that the published
  OmniTokenizer temporal layers carry, so those weights load strictly.

Token tensors are ``(B, N, D)``. The ideas (cosine-sim attention with constant scale, null kv)
follow lucidrains' phenaki-pytorch as used by OmniTokenizer; the code is written from the
description in the project's reference notes.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

COSINE_SCALE = 8.0  # fixed softmax temperature of cosine-sim attention (weights were trained with it)
ROPE_THETA = 10000.0


class GainLayerNorm(nn.Module):
    """LayerNorm with a learnable gain ``gamma`` and a constant zero ``beta`` buffer (eps 1e-5)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))
        self.register_buffer("beta", torch.zeros(dim))  # persistent: it is in the published checkpoint

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, x.shape[-1:], self.gamma, self.beta)


def square_grid_side(num_tokens: int, what: str) -> int:
    """Side G of the square G×G token grid with ``num_tokens`` tokens; error if not square."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"{what} needs a square token grid, got {num_tokens} tokens per sequence")
    return side


def rope_angles_2d(num_tokens: int, head_dim: int, device: torch.device) -> Tensor:
    """Angles (N, head_dim/2) of 2-D axial RoPE on a square grid, x and y interleaved per pair.

    Token n sits at (row, col) = divmod(n, G). Complex pair 2i turns by col·θ_i, pair 2i+1 by
    row·θ_i, with θ_i = 10000^(−4i/head_dim), i < head_dim/4.
    """
    if head_dim % 4:
        raise ValueError(f"2-D RoPE needs head_dim divisible by 4, got {head_dim}")
    side = square_grid_side(num_tokens, "2-D RoPE")
    theta = ROPE_THETA ** (-4.0 * torch.arange(head_dim // 4, device=device, dtype=torch.float32) / head_dim)
    pos = torch.arange(num_tokens, device=device)
    row, col = (pos // side).float(), (pos % side).float()
    angle_x = col[:, None] * theta  # (N, d/4)
    angle_y = row[:, None] * theta
    return torch.stack((angle_x, angle_y), dim=-1).flatten(1)  # (N, d/2): x, y, x, y, ...


def apply_rope(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate consecutive pairs (x[2j], x[2j+1]) of ``x`` (..., N, d) by ``angles`` (N, d/2), in fp32."""
    xf = x.float().unflatten(-1, (-1, 2))  # (..., N, d/2, 2)
    a, b = xf.unbind(-1)
    cos, sin = angles.cos(), angles.sin()
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


class UnusedPositionBias(nn.Module):
    """Weight holder for OmniTokenizer's continuous position-bias MLP (2→D→D→heads); never applied.

    The published temporal layers own it but their attention path ignores it; keeping the module
    lets those checkpoints load strictly. Sub-module names mirror the original state dict.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.net = nn.ModuleList([
            nn.Sequential(nn.Linear(2, dim), nn.LeakyReLU(0.1)),
            nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(0.1)),
            nn.Linear(dim, heads),
        ])


class Attention(nn.Module):
    """Pre-LN cosine-sim multi-head attention: ``x + Attention(x, context)`` is the caller's residual.

    Only the query input is layer-normed: keys/values come from the raw ``x`` (self-attention) or
    from ``context_norm(context)`` (cross-attention). q and k are L2-normalised per head, scaled by
    learned per-dim ``q_scale``/``k_scale`` and attended with the constant temperature 8.

    Args:
        dim: token width. heads, head_dim: attention shape (inner width heads·head_dim).
        causal: lower-triangular mask (self-attention over time); null keys stay visible.
        rope: 2-D axial RoPE on q and k (self-attention over a square spatial grid).
        num_null_kv: learned key/value pairs prepended to every sequence's keys/values.
        cross: this is cross-attention (``context`` required in forward).
        context_dim: width of the context (default ``dim``). context_norm: GainLayerNorm on it.
        unused_position_bias: also hold the dead OmniTokenizer position-bias MLP (loading only).
    """

    def __init__(self, dim: int, heads: int, head_dim: int, *, causal: bool = False, rope: bool = False,
                 num_null_kv: int = 0, cross: bool = False, context_dim: Optional[int] = None,
                 context_norm: bool = True, unused_position_bias: bool = False) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.causal, self.rope, self.cross = causal, rope, cross
        self.q_scale = nn.Parameter(torch.ones(head_dim))
        self.k_scale = nn.Parameter(torch.ones(head_dim))
        if unused_position_bias:
            self.unused_position_bias = UnusedPositionBias(dim, heads)
        self.norm = GainLayerNorm(dim)
        context_dim = context_dim or dim
        self.context_norm = GainLayerNorm(context_dim) if cross and context_norm else nn.Identity()
        self.num_null_kv = num_null_kv
        if num_null_kv:
            # layout (heads, (n kv), head_dim): key and value of each null pair interleaved
            self.null_kv = nn.Parameter(torch.randn(heads, 2 * num_null_kv, head_dim))
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim if cross else dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor, context: Optional[Tensor] = None) -> Tensor:
        """x: (B, N, D); context: (B, M, Dc) for cross-attention. Returns (B, N, D) (no residual)."""
        if self.cross and context is None:
            raise ValueError("cross-attention layer called without a context")
        kv_input = self.context_norm(context) if self.cross else x  # K/V from the un-normed input
        q = self.to_q(self.norm(x))
        k, v = self.to_kv(kv_input).chunk(2, dim=-1)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, v))  # (B, h, N, d)
        if self.rope:
            if self.cross:
                raise ValueError("RoPE is defined for self-attention only")
            angles = rope_angles_2d(q.shape[-2], self.head_dim, q.device)
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        if self.num_null_kv:
            null_k, null_v = repeat(self.null_kv, "h (n r) d -> r b h n d", b=x.shape[0], r=2).to(k.dtype)
            k, v = torch.cat((null_k, k), dim=-2), torch.cat((null_v, v), dim=-2)
        q = F.normalize(q, dim=-1) * self.q_scale.to(q.dtype)
        k = F.normalize(k, dim=-1) * self.k_scale.to(k.dtype)
        mask, is_causal = None, False
        if self.causal:
            if self.num_null_kv or q.shape[-2] != k.shape[-2]:
                mask = self._causal_mask(q.shape[-2], k.shape[-2], q.device)
            else:
                is_causal = True
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=COSINE_SCALE)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))

    @staticmethod
    def _causal_mask(num_q: int, num_k: int, device: torch.device) -> Tensor:
        """Boolean (Nq, Nk) mask, True = attend; aligned bottom-right so prepended null keys are visible."""
        return torch.ones(num_q, num_k, dtype=torch.bool, device=device).tril(num_k - num_q)


class WindowAttention(nn.Module):
    """Swin-style attention inside non-overlapping w×w windows of a square grid (no shift).

    Gain-only pre-LN, qkv without bias (split q, k, v), scale head_dim^-0.5, learned relative
    position bias table ((2w−1)², heads), output projection with bias.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, window_size: int) -> None:
        super().__init__()
        self.heads, self.head_dim, self.window_size = heads, head_dim, window_size
        inner = heads * head_dim
        span = 2 * window_size - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(span * span, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij"))
        coords = coords.flatten(1)  # (2, w²) rows, cols
        rel = coords[:, :, None] - coords[:, None, :] + window_size - 1  # (2, w², w²) in [0, 2w-2]
        self.register_buffer("relative_position_index", rel[0] * span + rel[1])  # persistent (in checkpoint)
        self.norm = GainLayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, N, D) with N = G², G divisible by the window size. Returns (B, N, D) (no residual)."""
        side = square_grid_side(x.shape[1], "window attention")
        w = self.window_size
        if side % w:
            raise ValueError(f"window attention: grid side {side} is not divisible by window size {w}")
        x = self.norm(x)
        windows = rearrange(x, "b (nh wh nw ww) d -> (b nh nw) (wh ww) d", nh=side // w, wh=w, ww=w)
        q, k, v = rearrange(self.qkv(windows), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        bias = self.relative_position_bias_table[self.relative_position_index]  # (w², w², heads)
        bias = rearrange(bias, "i j h -> h i j").to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.head_dim ** -0.5)
        out = self.proj(rearrange(out, "b h n d -> b n (h d)"))
        return rearrange(out, "(b nh nw) (wh ww) d -> b (nh wh nw ww) d", nh=side // w, nw=side // w, wh=w)
