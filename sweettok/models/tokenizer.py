"""SweetTok tokenizer: DQAE encoder, two quantizers, decoder to proxy-code logits, stage-2 pixels.

    model = SweetTok(cfg.model.tokenizer, cfg.model.proxy)               # stage 1
    model = SweetTok(cfg.model.tokenizer, cfg.model.proxy, pixel_decoder=True)   # stage 2
    out = model.encode(video)               # TokenizerOutput: latents, indices (B, N), loss, logs
    logits = model.decode(out.latents)      # (B, K, T', H', W') over the proxy's K codes
    logits = model.decode_indices(out.indices)        # identical to the line above (eval mode)
    video = model.decode_pixels(out.latents)          # stage 2: softmax(logits) . proxy codes -> proxy decoder
    words = model.indices_to_words(out.indices[0])    # {"spatial_first": [...], ...}

Index layout: ``sweettok.token_layout.TokenLayout`` (``model.layout``), the only place that
orders indices. Encode: encoder -> Linear -> L2 norm over the whole latent -> quantizer, per branch;
decode: Linear -> decoder. The stage-2 pixel path is the proxy tokenizer's decoding half
(``ProxyTokenizer(with_encoder=False)``: codebook buffers, Linear(code_dim -> width), decoder) under
``pixel.``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sweettok.config import ProxyConfig, QuantizerConfig, TokenizerConfig
from sweettok.models.blocks import init_weights
from sweettok.models.decoder import DQAEDecoder
from sweettok.models.encoder import DQAEEncoder
from sweettok.models.proxy import ProxyTokenizer
from sweettok.priors.prior import find_prior
from sweettok.quantizers import build_quantizer
from sweettok.token_layout import TokenLayout

logger = logging.getLogger(__name__)

ENCODER_SIDE = ("encoder", "spatial_pre_quant", "temporal_pre_quant", "spatial_quantizer", "temporal_quantizer")


@dataclass
class TokenizerOutput:
    """Result of ``SweetTok.encode``."""

    latents: tuple[Tensor, Tensor]  # quantised (straight-through) spatial (B, Ls, Ds), temporal (B, Lt, Dt)
    indices: Tensor  # (B, N) int64 in the TokenLayout order
    loss: Tensor  # scalar: spatial + temporal quantizer losses
    logs: dict = field(default_factory=dict)  # detached scalars, keys spatial/... and temporal/...


def check_prior_files(cfg: QuantizerConfig, what: str) -> None:
    """Clear error when an MLC quantizer's prior file is missing (paths are relative to the cwd)."""
    if cfg.kind != "mlc":
        return
    if not cfg.prior:
        raise FileNotFoundError(f"{what}.prior is empty: an MLC quantizer needs its prior file; build one with "
                                "scripts/build_codebook_priors.py or name the original pickle (codebook_priors/README.md)")
    try:
        find_prior(cfg.prior)
    except FileNotFoundError as err:  # the same rules as the loader (no fallback between prior kinds)
        raise FileNotFoundError(f"{what}.prior: {cfg.prior!r} (relative to {Path.cwd()}): {err}") from None


class SweetTok(nn.Module):
    """SweetTok-Compact tokenizer (see the module docstring for the API)."""

    def __init__(self, cfg: TokenizerConfig, proxy: ProxyConfig, pixel_decoder: bool = False,
                 quantizers: Optional[tuple[nn.Module, nn.Module]] = None) -> None:
        super().__init__()
        self._check_proxy(cfg, proxy)
        self.cfg, self.proxy_cfg = cfg, proxy
        if cfg.spatial_quantizer.top_k != cfg.temporal_quantizer.top_k:
            raise ValueError("tokenizer: spatial_quantizer.top_k and temporal_quantizer.top_k must agree "
                             "(one index layout)")
        spatial_dim, temporal_dim = 2 * cfg.spatial_quantizer.code_dim, 2 * cfg.temporal_quantizer.code_dim
        self.encoder = DQAEEncoder(cfg)
        self.spatial_pre_quant = nn.Linear(cfg.width, spatial_dim)
        self.temporal_pre_quant = nn.Linear(cfg.width, temporal_dim)
        self.spatial_post_quant = nn.Linear(spatial_dim, cfg.width)
        self.temporal_post_quant = nn.Linear(temporal_dim, cfg.width)
        self.decoder = DQAEDecoder(cfg, proxy.codebook_size)
        self.apply(partial(init_weights, linear_init=cfg.linear_init))  # before the quantizers and the pixel path
        if quantizers is None:
            check_prior_files(cfg.spatial_quantizer, "model.tokenizer.spatial_quantizer")
            check_prior_files(cfg.temporal_quantizer, "model.tokenizer.temporal_quantizer")
            quantizers = (build_quantizer(cfg.spatial_quantizer), build_quantizer(cfg.temporal_quantizer))
        for quantizer, qcfg, name in zip(quantizers, (cfg.spatial_quantizer, cfg.temporal_quantizer),
                                         ("spatial", "temporal")):
            if (quantizer.code_dim, quantizer.top_k) != (qcfg.code_dim, qcfg.top_k):
                raise ValueError(f"{name} quantizer has code_dim={quantizer.code_dim}, top_k={quantizer.top_k}; "
                                 f"model.tokenizer.{name}_quantizer says {qcfg.code_dim}, {qcfg.top_k}")
        self.spatial_quantizer, self.temporal_quantizer = quantizers
        if pixel_decoder:
            self.pixel = ProxyTokenizer(proxy, with_encoder=False)
        self.encoder_frozen = False

    @staticmethod
    def _check_proxy(cfg: TokenizerConfig, proxy: ProxyConfig) -> None:
        """The decoder predicts the proxy's codes on the proxy's grid: both must describe the same clip."""
        for name in ("image_size", "num_frames", "patch_size", "temporal_patch_size"):
            if getattr(cfg, name) != getattr(proxy, name):
                raise ValueError(f"model.tokenizer.{name}={getattr(cfg, name)} differs from model.proxy.{name}="
                                 f"{getattr(proxy, name)}: the decoder predicts the proxy's code grid")

    # ------------------------------------------------------------------ properties

    @property
    def has_pixel_decoder(self) -> bool:
        """Whether the stage-2 pixel path (``pixel.*``) was built."""
        return hasattr(self, "pixel")

    @property
    def layout(self) -> TokenLayout:
        """The index layout: latent counts, top-k and the loaded quantizers' sub-codebook sizes."""
        s, t = self.spatial_quantizer, self.temporal_quantizer
        return TokenLayout.from_sizes(s.first_size, s.second_size, t.first_size, t.second_size,
                                      num_spatial=self.cfg.num_spatial_queries,
                                      num_temporal=self.cfg.num_temporal_queries,
                                      top_k=self.cfg.spatial_quantizer.top_k,
                                      pos_names=(s.first_pos, s.second_pos, t.first_pos, t.second_pos))

    def latent_grid(self) -> tuple[int, int, int]:
        """(T', H', W') of the proxy-code grid the decoder predicts."""
        return self.decoder.grid

    # ------------------------------------------------------------------ stage 2

    def freeze_encoder(self) -> "SweetTok":
        """Stage 2: encoder, projections and quantizers stop training and stay in eval mode (indices fixed)."""
        for name in ENCODER_SIDE:
            getattr(self, name).requires_grad_(False)
        self.encoder_frozen = True
        return self.train(self.training)

    def train(self, mode: bool = True) -> "SweetTok":
        """As nn.Module.train, but a frozen encoder side stays in eval mode."""
        super().train(mode)
        if self.encoder_frozen:
            for name in ENCODER_SIDE:
                getattr(self, name).eval()
        return self

    # ------------------------------------------------------------------ encode

    def encode(self, video: Tensor, redundant: bool = False) -> TokenizerOutput:
        """video (B, C, T, H, W) in [-0.5, 0.5] -> quantised latents, flat indices (B, N), loss, logs."""
        if video.ndim != 5:
            raise ValueError(f"video must be (B, C, T, H, W), got shape {tuple(video.shape)}")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.encoder_frozen):
            spatial, temporal = self.encoder(video, redundant=redundant)
            spatial = F.normalize(self.spatial_pre_quant(spatial), dim=-1)  # L2 over the whole latent
            temporal = F.normalize(self.temporal_pre_quant(temporal), dim=-1)
            s_out, t_out = self.spatial_quantizer(spatial), self.temporal_quantizer(temporal)
        indices = self.layout.pack(s_out.first_indices, s_out.second_indices, t_out.first_indices,
                                   t_out.second_indices)
        logs = {f"spatial/{k}": v for k, v in s_out.logs.items()}
        logs.update({f"temporal/{k}": v for k, v in t_out.logs.items()})
        return TokenizerOutput((s_out.z_q, t_out.z_q), indices, s_out.loss + t_out.loss, logs)

    def indices_to_latents(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Flat indices (B, N) -> quantised latents (spatial (B, Ls, Ds), temporal (B, Lt, Dt)), float32."""
        s_first, s_second, t_first, t_second = self.layout.unpack(indices.to(self._device()))
        return (self.spatial_quantizer.codes_from_indices(s_first, s_second),
                self.temporal_quantizer.codes_from_indices(t_first, t_second))

    def indices_to_words(self, indices: Tensor) -> Union[dict[str, list[str]], list[dict[str, list[str]]]]:
        """One clip's indices (N,) -> {segment: words in index order}; a batch (B, N) -> a list of those."""
        if indices.ndim == 1:
            return self.indices_to_words(indices[None])[0]
        s_first, s_second, t_first, t_second = self.layout.unpack(indices.cpu())
        sf, ss = self.spatial_quantizer.words_from_indices(s_first, s_second)
        tf, ts = self.temporal_quantizer.words_from_indices(t_first, t_second)
        flat = lambda rows: [word for token in rows for word in token]  # noqa: E731  token-major, as the layout
        return [{"spatial_first": flat(sf[i]), "spatial_second": ss[i], "temporal_first": flat(tf[i]),
                 "temporal_second": ts[i]} for i in range(indices.shape[0])]

    # ------------------------------------------------------------------ decode

    def decode(self, latents: tuple[Tensor, Tensor], redundant: bool = False) -> Tensor:
        """Quantised latents (spatial, temporal) -> proxy-code logits (B, K, T', H', W')."""
        spatial, temporal = latents
        dtype = self.spatial_post_quant.weight.dtype
        spatial = self.spatial_post_quant(spatial.to(dtype))
        temporal = self.temporal_post_quant(temporal.to(dtype))
        return self.decoder(spatial, temporal, redundant=redundant)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Flat indices (B, N) -> logits (B, K, T', H', W'); equals ``decode(encode(x).latents)`` in eval mode."""
        return self.decode(self.indices_to_latents(indices))

    def logits_to_pixels(self, logits: Tensor) -> Tensor:
        """Stage 2: logits (B, K, T', H', W') -> video (B, C, T, H, W) through the proxy's decoder (soft codes)."""
        if not self.has_pixel_decoder:
            raise RuntimeError("this SweetTok has no pixel decoder: build it with pixel_decoder=True (stage 2)")
        return self.pixel.decode_soft(logits)

    def decode_pixels(self, latents: tuple[Tensor, Tensor]) -> Tensor:
        """Quantised latents -> video (B, C, T, H, W), unclamped, in [-0.5, 0.5] units."""
        return self.logits_to_pixels(self.decode(latents))

    def decode_indices_to_pixels(self, indices: Tensor) -> Tensor:
        """Flat indices (B, N) -> video (B, C, T, H, W) (generation)."""
        return self.logits_to_pixels(self.decode_indices(indices))

    def forward(self, video: Tensor) -> tuple[Tensor, TokenizerOutput]:
        """Training: video -> (logits (B, K, T', H', W'), TokenizerOutput)."""
        out = self.encode(video)
        return self.decode(out.latents), out

    def _device(self) -> torch.device:
        return self.spatial_pre_quant.weight.device

    # ------------------------------------------------------------------ bookkeeping

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per part, grouped as the reference counts them (encoder without the query tokens)."""
        queries = {n for n, _ in self.encoder.named_parameters() if n.endswith("query_tokens")}
        counts = {
            "encoder": sum(p.numel() for n, p in self.encoder.named_parameters() if n not in queries),
            "queries": sum(p.numel() for n, p in self.encoder.named_parameters() if n in queries),
            "projections": sum(p.numel() for m in (self.spatial_pre_quant, self.temporal_pre_quant,
                                                   self.spatial_post_quant, self.temporal_post_quant)
                               for p in m.parameters()),
            "decoder": sum(p.numel() for p in self.decoder.parameters()),
            "quantizers": sum(p.numel() for m in (self.spatial_quantizer, self.temporal_quantizer)
                              for p in m.parameters()),
        }
        if self.has_pixel_decoder:
            counts["pixel"] = sum(p.numel() for p in self.pixel.parameters())
        return counts

    @classmethod
    def from_pretrained(cls, directory: Union[str, Path], map_location: str = "cpu") -> "SweetTok":
        """Load an export folder or hub id (``sweettok.models.pretrained``): eval mode, gradients off."""
        from sweettok.models.pretrained import load_pretrained

        return load_pretrained(directory, map_location)

    def save_pretrained(self, directory: Union[str, Path], config=None) -> Path:
        """Write a self-contained export folder (weights, config, MLC priors, their hashes).

        ``config`` is the full run config; by default the one the model was loaded with, else the
        schema defaults around the model's own tokenizer and proxy sections.
        """
        from sweettok.models.pretrained import model_config, save_pretrained

        return save_pretrained(self.state_dict(), config if config is not None else model_config(self), directory)
