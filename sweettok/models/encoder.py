"""DQAE encoder of SweetTok-Compact: decoupled spatial (appearance) and temporal (motion) queries.

Paper preset, clip (B, 3, 17, 256, 256) in [-0.5, 0.5]:

    tokens = causal patch embed                          (B, 5, 32, 32, 512)
    spatial:  per-frame stack "ttwwtttt" (RoPE, causal PEG across frames), every layer's output
              mean-pooled over the 5 latent frames -> S_i (B, 1024, 512);
              256 queries + pos, own stack "ttwwtttt" (RoPE on 16x16), layer i cross-attends S_i
    temporal: D = tokens[:, 1:] - tokens[:, :-1]         (B, 4, 32, 32, 512)
              causal stack "tttt" per grid position over D -> M_i ((B*1024), 4, 512);
              1024 queries (query n <-> grid position n) + pos, stack "tttt", layer i cross-attends M_i
    out: LayerNorm -> Linear per branch -> spatial (B, 256, 512), temporal (B, 1024, 512)

Each temporal query is a sequence of length 1, so its self-attention attends to the query alone
(no null key/values in these stacks): the output is exactly ``to_out(v)``. ``pointwise_stack`` runs
such stacks on (B*L, 1, D) tokens computing only that, which the ``redundant=True`` path (plain
stack call, as the original) checks in the tests.

``query_layout="joint"`` (ablation of the decoupling): one stack of Ls + Lt queries (no RoPE, no
windows) whose layer i cross-attends to the *un-pooled* output i of the per-frame spatial stack,
i.e. to all T'*H'*W' patch tokens; its outputs are split into the first Ls (spatial quantizer)
and the last Lt (temporal quantizer), so the token layout and the decoder are unchanged. The
temporal difference branch does not exist in this layout.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import Tensor, nn

from sweettok.config import TokenizerConfig
from sweettok.models.attention import Attention
from sweettok.models.patch_embed import CausalPatchEmbed, latent_frames
from sweettok.models.transformer import Transformer, TransformerSpec

QUERY_LAYOUTS = ("decoupled", "joint")


def grid_shape(cfg: TokenizerConfig) -> tuple[int, int, int]:
    """(T', H', W') latent grid of the configured clip."""
    if cfg.image_size % cfg.patch_size:
        raise ValueError(f"image_size {cfg.image_size} is not divisible by patch_size {cfg.patch_size}")
    side = cfg.image_size // cfg.patch_size
    return latent_frames(cfg.num_frames, cfg.temporal_patch_size), side, side


def stack_spec(cfg: TokenizerConfig, block: str, **kwargs) -> TransformerSpec:
    """A TransformerSpec with the tokenizer's width, heads and FF; PEG off unless asked."""
    base = dict(dim=cfg.width, block=block, heads=cfg.heads, head_dim=cfg.head_dim, ff_mult=cfg.ff_mult,
                window_size=cfg.window_size, peg=False)
    base.update(kwargs)
    return TransformerSpec(**base)


def query_embedding(num: int, dim: int) -> nn.Parameter:
    """Learned (num, dim) tokens, init randn * dim^-0.5 as the original's queries and positions."""
    return nn.Parameter(torch.randn(num, dim) * dim ** -0.5)


def freeze_unused_norm(stack: Transformer) -> None:
    """The final norm of a stack read only through its per-layer outputs never gets a gradient.

    It stays (published checkpoints hold it) but does not train, so DDP needs no unused-parameter search.
    """
    stack.norm_out.requires_grad_(False)


def freeze_single_token_attention(stack: Transformer) -> None:
    """Freeze what self-attention over one token never uses: q, its norm, q/k scales.

    Softmax over a single key is 1 whatever the logits, so these get exactly zero gradient in the
    original too; frozen, they stay loadable but out of the optimizer and of DDP's reducer. (The
    key rows of ``to_kv`` share a weight with the used value rows, so they stay trainable, at
    zero gradient.)
    """
    for layer in stack.layers:
        if layer.kind == "t":
            for module in (layer.attn.to_q, layer.attn.norm):
                module.requires_grad_(False)
            layer.attn.q_scale.requires_grad_(False)
            layer.attn.k_scale.requires_grad_(False)


def single_token_self_attention(attn: Attention, x: Tensor) -> Tensor:
    """Self-attention over length-1 sequences without null key/values: softmax over one key is 1.

    x: (B', 1, D). Equals ``attn(x)``: the output is the value projection of x (keys and values
    come from the un-normed input in ``Attention``) through ``to_out``; q, k, RoPE and the
    softmax are skipped.
    """
    if attn.num_null_kv or attn.cross:
        raise ValueError("the length-1 shortcut needs self-attention without null key/values")
    inner = attn.heads * attn.head_dim
    value = F.linear(x, attn.to_kv.weight[inner:])  # (B', 1, inner), the v half of to_kv
    return attn.to_out(value)


def pointwise_stack(stack: Transformer, x: Tensor, contexts: Optional[Sequence[Optional[Tensor]]] = None,
                    return_inter: bool = False) -> Tensor | list[Tensor]:
    """Run a PEG-free, window-free stack on length-1 sequences x (B', 1, D) the cheap exact way.

    ``contexts[i]`` is layer i's cross-attention context (as ``multi_cross``). Same outputs as
    ``stack(x, context=contexts, multi_cross=..., return_inter=...)``.
    """
    if x.shape[1] != 1:
        raise ValueError(f"pointwise_stack expects length-1 sequences, got {tuple(x.shape)}")
    inter = []
    for i, layer in enumerate(stack.layers):
        if layer.kind == "w" or hasattr(layer, "peg"):
            raise ValueError("pointwise_stack: window and PEG layers need a grid")
        if layer.kind == "t":
            x = x + single_token_self_attention(layer.attn, x)
        if layer.has_cross_attention:
            x = x + layer.cross_attn(x, None if contexts is None else contexts[i])
        x = x + layer.ff(x)
        inter.append(x)
    out = stack.norm_out(x)
    return inter + [out] if return_inter else out


class DQAEEncoder(nn.Module):
    """Video (B, C, T, H, W) -> pre-projection latents: spatial (B, Ls, D) and temporal (B, Lt, D)."""

    def __init__(self, cfg: TokenizerConfig) -> None:
        super().__init__()
        if cfg.query_layout not in QUERY_LAYOUTS:
            raise ValueError(f"tokenizer.query_layout must be one of {QUERY_LAYOUTS}, got {cfg.query_layout!r}")
        self.cfg = cfg
        self.grid = grid_shape(cfg)
        t, h, w = self.grid
        d = cfg.width
        self.patch_embed = CausalPatchEmbed(d, cfg.patch_size, cfg.temporal_patch_size, cfg.in_channels,
                                            cfg.patch_input_norm, cfg.patch_output_norm)
        self.spatial_stack = Transformer(stack_spec(cfg, cfg.encoder_spatial_block, axis="space", rope=True,
                                                    peg=True, peg_causal=True))
        freeze_unused_norm(self.spatial_stack)
        query_kwargs = dict(axis="space", cross_attention=True, cross_num_null_kv=cfg.encoder_num_null_kv)
        if cfg.query_layout == "joint":
            self._check_depth("joint_query_block", cfg.joint_query_block, cfg.encoder_spatial_block)
            if "w" in cfg.joint_query_block:
                raise ValueError("tokenizer.joint_query_block: window layers need a square query grid")
            num = cfg.num_spatial_queries + cfg.num_temporal_queries
            self.joint_query_tokens, self.joint_query_pos = query_embedding(num, d), query_embedding(num, d)
            self.joint_query_stack = Transformer(stack_spec(cfg, cfg.joint_query_block, **query_kwargs))
        else:
            self._check_depth("encoder_spatial_query_block", cfg.encoder_spatial_query_block,
                              cfg.encoder_spatial_block)
            if math.isqrt(cfg.num_spatial_queries) ** 2 != cfg.num_spatial_queries:
                raise ValueError(f"tokenizer.num_spatial_queries={cfg.num_spatial_queries} must be a square "
                                 "(2-D RoPE grid of the query stack)")
            if cfg.num_temporal_queries != h * w:
                raise ValueError(f"tokenizer.num_temporal_queries={cfg.num_temporal_queries} must equal the "
                                 f"patch grid H'*W'={h * w} (one temporal query per position)")
            if not 0 < cfg.encoder_temporal_query_depth <= cfg.encoder_temporal_depth:
                raise ValueError("tokenizer.encoder_temporal_query_depth must be in [1, encoder_temporal_depth]")
            self.spatial_query_tokens = query_embedding(cfg.num_spatial_queries, d)
            self.spatial_query_pos = query_embedding(cfg.num_spatial_queries, d)
            self.spatial_query_stack = Transformer(stack_spec(cfg, cfg.encoder_spatial_query_block, rope=True,
                                                              **query_kwargs))
            self.temporal_stack = Transformer(stack_spec(cfg, "t" * cfg.encoder_temporal_depth, axis="time",
                                                         causal=True, peg=True, peg_causal=True,
                                                         peg_layout=cfg.peg_layout))
            freeze_unused_norm(self.temporal_stack)
            self.temporal_query_tokens = query_embedding(cfg.num_temporal_queries, d)
            self.temporal_query_pos = query_embedding(cfg.num_temporal_queries, d)
            self.temporal_query_stack = Transformer(stack_spec(cfg, "t" * cfg.encoder_temporal_query_depth,
                                                               **query_kwargs))
            freeze_single_token_attention(self.temporal_query_stack)
        self.spatial_norm, self.spatial_proj = nn.LayerNorm(d), nn.Linear(d, d)
        self.temporal_norm, self.temporal_proj = nn.LayerNorm(d), nn.Linear(d, d)

    @staticmethod
    def _check_depth(name: str, block: str, reference: str) -> None:
        if len(block) != len(reference):
            raise ValueError(f"tokenizer.{name}={block!r} must have the depth of encoder_spatial_block "
                             f"({len(reference)}): query layer i cross-attends to token layer i")

    def forward(self, video: Tensor, redundant: bool = False) -> tuple[Tensor, Tensor]:
        """video (B, C, T, H, W) -> (spatial (B, Ls, D), temporal (B, Lt, D)) before quantisation."""
        tokens = self.patch_embed(video)  # (B, T', H', W', D)
        b, t, h, w, _ = tokens.shape
        if (t, h, w) != self.grid:
            raise ValueError(f"encoder: clip {tuple(video.shape)} gives a {t}x{h}x{w} grid, the config says "
                             f"{self.grid} (tokenizer.num_frames / image_size)")
        frames = rearrange(tokens, "b t h w d -> (b t) (h w) d")
        spatial_inter = self.spatial_stack(frames, (b, t, h, w), return_inter=True)  # depth+1 x (B*T', H'W', D)
        if self.cfg.query_layout == "joint":
            spatial, temporal = self._joint_queries(spatial_inter, b, t)
        else:
            spatial = self._spatial_queries(spatial_inter, b, t)
            temporal = self._temporal_queries(tokens, redundant)
        spatial = self.spatial_proj(self.spatial_norm(spatial))  # (B, Ls, D)
        temporal = self.temporal_proj(self.temporal_norm(temporal))  # (B, Lt, D)
        return spatial, temporal

    def _spatial_queries(self, inter: list[Tensor], b: int, t: int) -> Tensor:
        """Queries (B, Ls, D) cross-attending to the frame-pooled spatial outputs, layer by layer."""
        pooled = [reduce(x, "(b t) n d -> b n d", "mean", b=b, t=t) for x in inter[:-1]]  # (B, H'W', D) each
        queries = repeat(self.spatial_query_tokens + self.spatial_query_pos, "l d -> b l d", b=b)
        return self.spatial_query_stack(queries, context=pooled, multi_cross=True)

    def _temporal_queries(self, tokens: Tensor, redundant: bool) -> Tensor:
        """One query per grid position cross-attending to its consecutive-frame differences."""
        b, t, h, w, _ = tokens.shape
        diff = tokens[:, 1:] - tokens[:, :-1]  # (B, T'-1, H', W', D)
        seq = rearrange(diff, "b t h w d -> (b h w) t d")
        motion = self.temporal_stack(seq, (b, t - 1, h, w), return_inter=True)  # (B*H'W', T'-1, D) each
        contexts = motion[: len(self.temporal_query_stack.layers)]
        queries = repeat(self.temporal_query_tokens + self.temporal_query_pos, "l d -> (b l) 1 d", b=b)
        if redundant:
            out = self.temporal_query_stack(queries, context=contexts, multi_cross=True)
        else:
            out = pointwise_stack(self.temporal_query_stack, queries, contexts)
        return rearrange(out, "(b l) 1 d -> b l d", b=b)

    def _joint_queries(self, inter: list[Tensor], b: int, t: int) -> tuple[Tensor, Tensor]:
        """Ls + Lt queries over every patch token of every layer; split into the two query sets."""
        contexts = [rearrange(x, "(b t) n d -> b (t n) d", b=b, t=t) for x in inter[:-1]]  # (B, T'H'W', D)
        queries = repeat(self.joint_query_tokens + self.joint_query_pos, "l d -> b l d", b=b)
        out = self.joint_query_stack(queries, context=contexts, multi_cross=True)
        return out[:, : self.cfg.num_spatial_queries], out[:, self.cfg.num_spatial_queries:]
