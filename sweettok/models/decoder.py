"""SweetTok-Compact decoder: spatial + temporal latents -> proxy-code logits (B, K, T', H', W').

Paper preset (D = 512, Ls = 256, Lt = 1024 = 32*32, T' = 5, K = 8192):

    hs = embed_s(zs) + pos_s  -> spatial latent stack "tttttttt" (RoPE 16x16)  -> SL_0..SL_7
    ht = embed_t(zt) + pos_t  -> temporal latent stack "tttt" per latent       -> TL_0..TL_3
    G  = mask_token + 2-D pos (32*32), repeated over the T' latent frames      ((B*T'), 1024, D)
    for i in 0..7:  G = causal PEG -> RoPE self-attn -> cross-attn(SL_i, 2 null kv) -> FF
                    if i in (1, 3, 5, 7): per position, the T' frame tokens cross-attend to their
                    temporal latent TL_k (one-layer 'c' stack, 2 null kv; its output is used
                    without the stack's norm_out, as the original; that norm is frozen)
    logits = Linear(K) . tanh . Linear(head_hidden) . LayerNorm (G)

The original copies the spatial latents T' times before their stack; every copy is identical, so
here the stack runs once and its outputs are broadcast over frames. The temporal latents are
length-1 sequences (see ``encoder.pointwise_stack``). ``redundant=True`` runs the original's way.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from sweettok.config import TokenizerConfig
from sweettok.models.encoder import (
    freeze_single_token_attention, freeze_unused_norm, grid_shape, pointwise_stack, query_embedding, stack_spec)
from sweettok.models.transformer import Transformer


class DQAEDecoder(nn.Module):
    """(spatial (B, Ls, D), temporal (B, Lt, D)) -> logits (B, num_codes, T', H', W')."""

    def __init__(self, cfg: TokenizerConfig, num_codes: int) -> None:
        super().__init__()
        self.cfg, self.num_codes = cfg, num_codes
        self.grid = grid_shape(cfg)
        _, h, w = self.grid
        d = cfg.width
        self._validate(cfg, h * w)
        self.spatial_embed, self.temporal_embed = nn.Linear(d, d), nn.Linear(d, d)
        self.spatial_latent_pos = query_embedding(cfg.num_spatial_queries, d)
        self.temporal_latent_pos = query_embedding(cfg.num_temporal_queries, d)
        self.spatial_latent_stack = Transformer(stack_spec(cfg, cfg.decoder_spatial_latent_block, rope=True))
        self.temporal_latent_stack = Transformer(stack_spec(cfg, "t" * cfg.decoder_temporal_latent_depth))
        freeze_unused_norm(self.spatial_latent_stack)
        freeze_unused_norm(self.temporal_latent_stack)
        freeze_single_token_attention(self.temporal_latent_stack)
        self.mask_token = nn.Parameter(torch.randn(1, 1, d) * d ** -0.5)
        self.grid_pos = query_embedding(h * w, d)
        self.grid_stack = Transformer(stack_spec(cfg, cfg.decoder_block, axis="space", rope=True, peg=True,
                                                 peg_causal=True, peg_layout=cfg.peg_layout, cross_attention=True,
                                                 cross_num_null_kv=cfg.num_null_kv))
        self.temporal_cross = nn.ModuleList(
            Transformer(stack_spec(cfg, "c", axis="time", cross_num_null_kv=cfg.num_null_kv))
            for _ in cfg.decoder_temporal_layers)
        for stack in self.temporal_cross:  # read without norm_out, as the original (see Transformer._run_temporal)
            freeze_unused_norm(stack)
        self.head_norm = nn.LayerNorm(d)
        self.head_hidden = nn.Linear(d, cfg.head_hidden)
        self.head_out = nn.Linear(cfg.head_hidden, num_codes)

    @staticmethod
    def _validate(cfg: TokenizerConfig, grid_tokens: int) -> None:
        if len(cfg.decoder_spatial_latent_block) != len(cfg.decoder_block):
            raise ValueError(f"tokenizer.decoder_spatial_latent_block={cfg.decoder_spatial_latent_block!r} must "
                             f"have the depth of decoder_block ({len(cfg.decoder_block)}): "
                             "layer i reads latent output i")
        if "w" in cfg.decoder_block or "c" in cfg.decoder_block:
            raise ValueError(f"tokenizer.decoder_block={cfg.decoder_block!r}: only 't' layers cross-attend every layer")
        if math.isqrt(cfg.num_spatial_queries) ** 2 != cfg.num_spatial_queries:
            raise ValueError(f"tokenizer.num_spatial_queries={cfg.num_spatial_queries} must be a square (2-D RoPE)")
        if cfg.num_temporal_queries != grid_tokens:
            raise ValueError(f"tokenizer.num_temporal_queries={cfg.num_temporal_queries} must equal the patch grid "
                             f"H'*W'={grid_tokens}: the decoder's temporal layers pair latent n with position n")
        layers = list(cfg.decoder_temporal_layers)
        if sorted(set(layers)) != layers or any(not 0 <= i < len(cfg.decoder_block) for i in layers):
            raise ValueError(f"tokenizer.decoder_temporal_layers={layers} must be increasing layer numbers "
                             f"in [0, {len(cfg.decoder_block)})")
        if len(layers) > cfg.decoder_temporal_latent_depth:
            raise ValueError(f"tokenizer.decoder_temporal_latent_depth={cfg.decoder_temporal_latent_depth} must be "
                             f">= the number of decoder_temporal_layers ({len(layers)}): "
                             "temporal layer k reads output k")

    def forward(self, spatial: Tensor, temporal: Tensor, redundant: bool = False) -> Tensor:
        """spatial (B, Ls, D), temporal (B, Lt, D) (post-quantisation projections) -> logits (B, K, T', H', W')."""
        b = spatial.shape[0]
        t, h, w = self.grid
        hs = self.spatial_embed(spatial) + self.spatial_latent_pos  # (B, Ls, D)
        ht = rearrange(self.temporal_embed(temporal) + self.temporal_latent_pos, "b l d -> (b l) 1 d")
        if redundant:  # the original: T' identical copies through the stack
            copies = repeat(hs, "b l d -> (b t) l d", t=t)
            spatial_ctx = self.spatial_latent_stack(copies, return_inter=True)[:-1]
            temporal_ctx = self.temporal_latent_stack(ht, return_inter=True)[:-1]
        else:
            spatial_ctx = [repeat(x, "b l d -> (b t) l d", t=t)
                           for x in self.spatial_latent_stack(hs, return_inter=True)[:-1]]  # (B*T', Ls, D) each
            temporal_ctx = pointwise_stack(self.temporal_latent_stack, ht, return_inter=True)[:-1]
        grid = repeat(self.mask_token + self.grid_pos, "1 n d -> (b t) n d", b=b, t=t)  # (B*T', H'W', D)
        num_temporal = len(self.temporal_cross)
        x = self.grid_stack(grid, (b, t, h, w), context=spatial_ctx, multi_cross=True,
                            temporal_layers=list(self.temporal_cross), temporal_contexts=temporal_ctx[:num_temporal],
                            temporal_after=list(self.cfg.decoder_temporal_layers))
        logits = self.head_out(torch.tanh(self.head_hidden(self.head_norm(x))))  # (B*T', H'W', K)
        return rearrange(logits, "(b t) (h w) k -> b k t h w", b=b, h=h)
