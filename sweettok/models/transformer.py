"""Transformer stack driven by a block string, one character per layer.

* ``'t'``: [PEG] → self-attention → [cross-attention] → feed-forward, each a residual.
* ``'c'``: cross-attention → feed-forward.
* ``'w'``: window self-attention → feed-forward (no PEG, no cross-attention).

The stack ends with a gain-only LayerNorm (``norm_out``). Every setting is a field of
``TransformerSpec`` so that callers build their stacks from config:

    spec = TransformerSpec(dim=512, block="ttww", heads=8, head_dim=64, rope=True, window_size=8)
    stack = Transformer(spec)
    y = stack(x, video_shape=(B, T, H, W))                    # x: (B·T, H·W, D)

Tokens are ``(B', N, D)``; ``axis="space"`` means B' = B·T and N = H·W (per-frame sequences),
``axis="time"`` means B' = B·H·W and N = T (per-position sequences). ``video_shape`` is needed
by the PEG and by external temporal layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from sweettok.models.attention import Attention, GainLayerNorm, WindowAttention
from sweettok.models.blocks import PEG, FeedForward

LAYER_KINDS = ("t", "c", "w")
Context = Union[None, Tensor, Sequence[Optional[Tensor]]]


@dataclass
class TransformerSpec:
    """Constructor arguments of one ``Transformer`` stack."""

    dim: int
    block: str  # one of t / c / w per layer
    heads: int = 8
    head_dim: int = 64
    ff_mult: float = 4.0
    axis: str = "space"  # space: tokens (B·T, H·W, D); time: tokens (B·H·W, T, D)
    causal: bool = False  # causal self-attention (time stacks)
    rope: bool = False  # 2-D axial RoPE in self-attention (square grids)
    window_size: int = 8  # 'w' layers
    peg: bool = True  # PEG in 't' layers
    peg_causal: bool = True
    peg_layout: str = "correct"  # correct | original (OmniTokenizer weights' reshape quirk)
    cross_attention: bool = False  # 't' layers also cross-attend ('c' layers always do)
    num_null_kv: int = 0  # self-attention null key/values
    cross_num_null_kv: int = 0  # cross-attention null key/values
    context_dim: Optional[int] = None  # default: dim
    context_norm: bool = True  # gain-only LayerNorm on the cross-attention context
    unused_position_bias: bool = False  # hold OmniTokenizer's dead bias MLP in self-attention (loading)

    def __post_init__(self) -> None:
        bad = sorted(set(self.block) - set(LAYER_KINDS))
        if not self.block or bad:
            raise ValueError(f"block string {self.block!r}: layers must be one of {LAYER_KINDS}, got {bad}")

    @property
    def depth(self) -> int:
        """Number of layers."""
        return len(self.block)


class TransformerLayer(nn.Module):
    """One layer of kind 't', 'c' or 'w' (see the module docstring)."""

    def __init__(self, kind: str, spec: TransformerSpec) -> None:
        super().__init__()
        self.kind = kind
        dim = spec.dim
        if kind == "t" and spec.peg:
            self.peg = PEG(dim, causal=spec.peg_causal, layout=spec.peg_layout, axis=spec.axis)
        if kind == "t":
            self.attn = Attention(dim, spec.heads, spec.head_dim, causal=spec.causal, rope=spec.rope,
                                  num_null_kv=spec.num_null_kv, unused_position_bias=spec.unused_position_bias)
        elif kind == "w":
            self.attn = WindowAttention(dim, spec.heads, spec.head_dim, spec.window_size)
        if kind == "c" or (kind == "t" and spec.cross_attention):
            self.cross_attn = Attention(dim, spec.heads, spec.head_dim, cross=True, context_dim=spec.context_dim,
                                        context_norm=spec.context_norm, num_null_kv=spec.cross_num_null_kv)
        self.ff = FeedForward(dim, spec.ff_mult)

    @property
    def has_cross_attention(self) -> bool:
        """Whether this layer consumes a context."""
        return hasattr(self, "cross_attn")

    def forward(self, x: Tensor, video_shape: Optional[tuple[int, int, int, int]] = None,
                context: Optional[Tensor] = None) -> Tensor:
        """x: (B', N, D) → (B', N, D)."""
        if hasattr(self, "peg"):
            if video_shape is None:
                raise ValueError("a PEG layer needs video_shape=(B, T, H, W)")
            x = x + self.peg(x, video_shape)
        if hasattr(self, "attn"):
            x = x + self.attn(x)
        if self.has_cross_attention:
            x = x + self.cross_attn(x, context)
        return x + self.ff(x)


class Transformer(nn.Module):
    """A stack of layers from ``spec.block`` followed by ``norm_out``."""

    def __init__(self, spec: TransformerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleList(TransformerLayer(kind, spec) for kind in spec.block)
        self.norm_out = GainLayerNorm(spec.dim)
        # Recompute each layer in backward instead of storing its activations (training.activation_checkpointing).
        self.activation_checkpointing = False

    def forward(
        self,
        x: Tensor,
        video_shape: Optional[tuple[int, int, int, int]] = None,
        context: Context = None,
        *,
        multi_cross: bool = False,
        return_inter: bool = False,
        temporal_layers: Sequence[nn.Module] = (),
        temporal_contexts: Sequence[Optional[Tensor]] = (),
        temporal_after: Sequence[int] = (),
    ) -> Union[Tensor, list[Tensor]]:
        """Run the stack.

        Args:
            x: tokens (B', N, D), grouped as ``spec.axis`` says.
            video_shape: (B, T, H, W) of the token grid (PEG and external temporal layers).
            context: cross-attention context (B', M, Dc); with ``multi_cross`` a sequence whose
                item i is the context of layer i (the index advances on every layer, also on
                layers without cross-attention, whose item is ignored and may be None).
            return_inter: return a list of depth+1 tensors: each layer's output (after its
                external temporal layer, if any), then the final normed output.
            temporal_layers / temporal_contexts / temporal_after: after layer ``temporal_after[k]``
                the tokens are regrouped ``(b t) (h w) d -> (b h w) t d``, passed through
                ``temporal_layers[k]`` (a time ``Transformer``, e.g. one ``'c'`` layer, with
                ``context=temporal_contexts[k]``) and regrouped back; its last layer's output, without
                that stack's ``norm_out``, replaces the tokens (no extra residual). Only for
                space-grouped stacks.
        Returns:
            (B', N, D) normed output, or the list described under ``return_inter``.
        """
        if multi_cross and (context is None or len(context) != len(self.layers)):
            got = "None" if context is None else len(context)
            raise ValueError(f"multi_cross needs one context per layer ({len(self.layers)}), got {got}")
        if not len(temporal_layers) == len(temporal_contexts) == len(temporal_after):
            raise ValueError("temporal_layers, temporal_contexts and temporal_after must have equal lengths")
        external = {after: k for k, after in enumerate(temporal_after)}
        inter = []
        for i, layer in enumerate(self.layers):
            layer_context = context[i] if multi_cross else context
            layer_context = layer_context if layer.has_cross_attention else None
            if self.activation_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, video_shape, layer_context, use_reentrant=False)
            else:
                x = layer(x, video_shape, layer_context)
            if i in external:
                k = external[i]
                x = self._run_temporal(x, video_shape, temporal_layers[k], temporal_contexts[k])
            if return_inter:
                inter.append(x)
        out = self.norm_out(x)
        return inter + [out] if return_inter else out

    def _run_temporal(self, x: Tensor, video_shape: Optional[tuple[int, int, int, int]], layer: nn.Module,
                      context: Optional[Tensor]) -> Tensor:
        """Regroup space tokens to per-position time sequences, run ``layer``, regroup back.

        ``layer`` is a time-grouped ``Transformer``; its last layer's output is taken *without* its
        ``norm_out``, as the original SweetTok decoder does (that norm stays, frozen, for loading).
        """
        if self.spec.axis != "space" or video_shape is None:
            raise ValueError("external temporal layers need a space-grouped stack and video_shape")
        b, t, h, w = video_shape
        seq = rearrange(x, "(b t) (h w) d -> (b h w) t d", b=b, t=t, h=h, w=w)
        seq = layer(seq, video_shape=video_shape, context=context, return_inter=True)[-2]  # (B·H·W, T, D), un-normed
        return rearrange(seq, "(b h w) t d -> (b t) (h w) d", b=b, h=h, w=w)
