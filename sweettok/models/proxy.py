"""Proxy VQ tokenizer, compatible with OmniTokenizer's VQ stage (the published ``imagenet_ucf.ckpt``).

SweetTok's stage 1 learns to predict this tokenizer's codes; stage 2 decodes pixels through its
decoder. Pipeline (paper preset, 17×256×256 clip in [−0.5, 0.5]):

    video (B,3,17,256,256) → causal patch embed (B,5,32,32,512)
      → spatial stack per latent frame ("ttww": RoPE attention + causal PEG, then 8×8 windows)
      → causal time stack per grid position ("tttt") → Linear(512→8) → L2-normalise
      → nearest of 8192 codes → codes (B,5,32,32)
    codes → code vectors → Linear(8→512) → causal time stack → spatial stack ("tttt")
      → inverse patch embed → video (B,3,17,256,256), unbounded

Loading published weights: ``sweettok.models.proxy_convert.load_proxy_checkpoint``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from sweettok.config import ProxyConfig
from sweettok.models.blocks import PEG, init_weights
from sweettok.models.codebook import EMACodebook
from sweettok.models.patch_embed import CausalPatchEmbed, CausalPatchUnembed, latent_frames
from sweettok.models.transformer import Transformer, TransformerSpec


def _space_spec(cfg: ProxyConfig, block: str) -> TransformerSpec:
    """Per-frame stack: RoPE self-attention + causal PEG in 't' layers, window attention in 'w'."""
    return TransformerSpec(dim=cfg.width, block=block, heads=cfg.heads, head_dim=cfg.head_dim, ff_mult=cfg.ff_mult,
                           axis="space", rope=True, window_size=cfg.window_size, peg=True, peg_causal=True,
                           peg_layout=cfg.peg_layout)


def _time_spec(cfg: ProxyConfig, depth: int) -> TransformerSpec:
    """Per-position causal stack over latent frames (no positional encoding besides the PEG)."""
    return TransformerSpec(dim=cfg.width, block="t" * depth, heads=cfg.heads, head_dim=cfg.head_dim,
                           ff_mult=cfg.ff_mult, axis="time", causal=True, peg=True, peg_causal=True,
                           peg_layout=cfg.peg_layout, unused_position_bias=cfg.legacy_position_bias)


class ProxyEncoder(nn.Module):
    """Video (B, C, T, H, W) → tokens (B, T', H/p, W/p, D): patch embed, spatial stack, time stack."""

    def __init__(self, cfg: ProxyConfig) -> None:
        super().__init__()
        self.patch_embed = CausalPatchEmbed(cfg.width, cfg.patch_size, cfg.temporal_patch_size, cfg.in_channels,
                                            cfg.patch_input_norm, cfg.patch_output_norm)
        self.spatial = Transformer(_space_spec(cfg, cfg.encoder_block))
        self.temporal = Transformer(_time_spec(cfg, cfg.encoder_temporal_depth))

    def forward(self, video: Tensor) -> Tensor:
        tokens = self.patch_embed(video)  # (B, T', h, w, D)
        b, t, h, w, _ = tokens.shape
        shape = (b, t, h, w)
        x = self.spatial(rearrange(tokens, "b t h w d -> (b t) (h w) d"), shape)
        x = rearrange(x, "(b t) (h w) d -> (b h w) t d", b=b, h=h)
        x = self.temporal(x, shape)
        return rearrange(x, "(b h w) t d -> b t h w d", b=b, h=h)


class ProxyDecoder(nn.Module):
    """Tokens (B, T', h, w, D) → video (B, C, T, H, W): time stack, spatial stack, inverse patch embed."""

    def __init__(self, cfg: ProxyConfig) -> None:
        super().__init__()
        self.temporal = Transformer(_time_spec(cfg, cfg.decoder_temporal_depth))
        self.spatial = Transformer(_space_spec(cfg, cfg.decoder_block))
        self.patch_unembed = CausalPatchUnembed(cfg.width, cfg.patch_size, cfg.temporal_patch_size, cfg.in_channels)

    def forward(self, tokens: Tensor) -> Tensor:
        b, t, h, w, _ = tokens.shape
        shape = (b, t, h, w)
        x = self.temporal(rearrange(tokens, "b t h w d -> (b h w) t d"), shape)
        x = rearrange(x, "(b h w) t d -> (b t) (h w) d", b=b, h=h)
        x = self.spatial(x, shape)
        return self.patch_unembed(rearrange(x, "(b t) (h w) d -> b t h w d", b=b, h=h))


class ProxyTokenizer(nn.Module):
    """OmniTokenizer-compatible VQ video tokenizer (encoder, L2-normalised lookup, decoder).

    Video tensors are (B, C, T, H, W) in [−0.5, 0.5] with (T − 1) % temporal_patch_size == 0;
    codes are (B, T', H', W') int64. ``with_encoder=False`` builds only the pixel path
    (codebook, post-quantisation projection, decoder), e.g. for stage 2. ``initialise=False``
    skips the from-scratch weight init (weights about to be loaded).
    """

    def __init__(self, cfg: ProxyConfig, with_encoder: bool = True, initialise: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        if with_encoder:
            self.encoder = ProxyEncoder(cfg)
            self.pre_quant = nn.Linear(cfg.width, cfg.code_dim)
        self.codebook = EMACodebook(cfg.codebook_size, cfg.code_dim, decay=cfg.codebook_decay,
                                    commitment_weight=cfg.commitment_weight, data_init=cfg.codebook_data_init,
                                    dead_code_threshold=cfg.dead_code_threshold)
        self.post_quant = nn.Linear(cfg.code_dim, cfg.width)
        self.decoder = ProxyDecoder(cfg)
        if initialise:
            self.apply(init_weights)
            nn.init.trunc_normal_(self.post_quant.weight, std=cfg.post_quant_init_std)
            if cfg.peg_zero_bias:
                for module in self.modules():
                    if isinstance(module, PEG):
                        nn.init.zeros_(module.conv.bias)

    @property
    def has_encoder(self) -> bool:
        """Whether the encoder half was built."""
        return hasattr(self, "encoder")

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part (encoder, quantisation projections, decoder) and in total."""
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        parts = {name: count(getattr(self, name)) for name in ("encoder", "pre_quant", "post_quant", "decoder")
                 if hasattr(self, name)}
        return {**parts, "total": count(self)}

    def freeze(self) -> "ProxyTokenizer":
        """Eval mode and no gradients (the frozen stage-1 target)."""
        self.eval()
        self.requires_grad_(False)
        return self

    # ----------------------------------------------------------------- encoding

    def encode_latents(self, video: Tensor) -> Tensor:
        """Unit-length pre-quantisation latents (B, T', H', W', code_dim)."""
        if not self.has_encoder:
            raise RuntimeError("this ProxyTokenizer was built with_encoder=False")
        if video.ndim != 5:
            raise ValueError(f"video must be (B, C, T, H, W), got shape {tuple(video.shape)}")
        return F.normalize(self.pre_quant(self.encoder(video)), dim=-1)

    def quantize(self, z: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """z (..., code_dim) → (straight-through z_q, codes, {"commitment": ...}); EMA update in training."""
        return self.codebook(z)

    @torch.no_grad()
    def encode(self, video: Tensor) -> Tensor:
        """Codes (B, T', H', W') int64 of a video, computed in fp32 outside any autocast."""
        with torch.autocast(device_type=video.device.type, enabled=False):
            return self.codebook.lookup(self.encode_latents(video.float()))

    # ----------------------------------------------------------------- decoding

    def decode_latents(self, z_q: Tensor) -> Tensor:
        """Code vectors (B, T', H', W', code_dim) → video (B, C, T, H, W)."""
        return self.decoder(self.post_quant(z_q))

    def decode_codes(self, codes: Tensor) -> Tensor:
        """Codes (B, T', H', W') — or flat (B, T'·H'·W') on the config's square grid — → video."""
        if codes.ndim == 2:
            side = self.cfg.image_size // self.cfg.patch_size
            if codes.shape[1] % (side * side):
                raise ValueError(f"flat codes of length {codes.shape[1]} do not fill {side}×{side} frames")
            codes = rearrange(codes, "b (t h w) -> b t h w", h=side, w=side)
        if codes.ndim != 4:
            raise ValueError(f"codes must be (B, T', H', W') or (B, N), got shape {tuple(codes.shape)}")
        return self.decode_latents(self.codebook.embed(codes))

    def decode_soft(self, logits: Tensor) -> Tensor:
        """Logits (B, K, T', H', W') → softmax over K × codebook → decoder → video (stage 2's pixel path)."""
        if logits.ndim != 5 or logits.shape[1] != self.cfg.codebook_size:
            raise ValueError(f"logits must be (B, {self.cfg.codebook_size}, T', H', W'), got {tuple(logits.shape)}")
        probs = logits.softmax(dim=1)
        z = torch.einsum("bkthw,kc->bthwc", probs, self.codebook.embeddings.to(probs.dtype))
        return self.decode_latents(z)

    # ----------------------------------------------------------------- training (stage 0)

    def forward(self, video: Tensor) -> dict[str, Tensor]:
        """Reconstruct a video: {"reconstruction", "codes", "z_q", "commitment", "perplexity"}."""
        z = self.encode_latents(video)
        z_q, codes, losses = self.quantize(z)
        return {"reconstruction": self.decode_latents(z_q), "codes": codes, "z_q": z_q, **losses,
                "perplexity": self.codebook.perplexity(codes)}

    def latent_shape(self, num_frames: Optional[int] = None, image_size: Optional[int] = None) -> tuple[int, int, int]:
        """(T', H', W') of a clip (defaults: the config's clip)."""
        side = (image_size or self.cfg.image_size) // self.cfg.patch_size
        return latent_frames(num_frames or self.cfg.num_frames, self.cfg.temporal_patch_size), side, side
