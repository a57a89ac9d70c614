"""Shared builders for the tokenizer tests: the demo preset with tiny in-memory MLC priors."""

from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest
import torch

from sweettok.config import ProxyConfig, QuantizerConfig, TokenizerConfig
from sweettok.models.tokenizer import SweetTok
from sweettok.priors.prior import Prior
from sweettok.quantizers.mlc import MLCQuantizer

DEMO_QUANTIZER = QuantizerConfig(kind="mlc", code_dim=32, gcn_hidden=32, gcn_dropout=0.1, top_k=2)


def demo_tokenizer_config(**changes) -> TokenizerConfig:
    """The configs/demo/tokenizer.yaml preset (17x64x64 clips, width 64) as a dataclass."""
    cfg = TokenizerConfig(
        image_size=64, width=64, heads=4, head_dim=16, window_size=4, num_spatial_queries=16,
        num_temporal_queries=64, encoder_spatial_block="twtt", encoder_spatial_query_block="twtt",
        encoder_temporal_depth=2, encoder_temporal_query_depth=2, joint_query_block="tttt",
        decoder_spatial_latent_block="tttt", decoder_temporal_latent_depth=2, decoder_block="tttt",
        decoder_temporal_layers=[1, 3], head_hidden=128, spatial_quantizer=DEMO_QUANTIZER,
        temporal_quantizer=DEMO_QUANTIZER)
    return dataclasses.replace(cfg, **changes)


def demo_proxy_config() -> ProxyConfig:
    """The configs/demo/proxy.yaml preset (256 codes on the 5x8x8 grid)."""
    return ProxyConfig(image_size=64, width=64, heads=4, head_dim=16, window_size=4, encoder_block="tw",
                       encoder_temporal_depth=2, decoder_block="tt", decoder_temporal_depth=2, codebook_size=256,
                       peg_layout="correct", legacy_position_bias=False)


def tiny_prior(num_first: int, num_second: int, dim: int, pos: tuple[str, str], seed: int = 0) -> Prior:
    """Random word vectors and a few first-second edges."""
    g = torch.Generator().manual_seed(seed)
    edges = torch.stack([torch.randint(0, num_first, (3 * num_first,), generator=g),
                         torch.randint(num_first, num_first + num_second, (3 * num_first,), generator=g)], dim=1)
    return Prior([f"{pos[0]}{i}" for i in range(num_first)], [f"{pos[1]}{i}" for i in range(num_second)],
                 pos[0], pos[1], torch.randn(num_first + num_second, dim, generator=g), edges,
                 [20] * (num_first + num_second))


def tiny_priors(dim: int = 24) -> tuple[Prior, Prior]:
    """(spatial adjective/noun prior, temporal adverb/verb prior)."""
    return tiny_prior(10, 12, dim, ("adjective", "noun"), 0), tiny_prior(7, 9, dim, ("adverb", "verb"), 1)


def mlc_quantizers(cfg: TokenizerConfig, dim: int = 24) -> tuple[MLCQuantizer, MLCQuantizer]:
    """MLC quantizers for ``cfg`` over the tiny priors."""
    spatial, temporal = tiny_priors(dim)
    return MLCQuantizer(cfg.spatial_quantizer, spatial), MLCQuantizer(cfg.temporal_quantizer, temporal)


def demo_model(seed: int = 0, pixel_decoder: bool = False, **changes) -> SweetTok:
    """A demo-preset SweetTok with MLC quantizers over the tiny priors (or VQ when the config says so)."""
    torch.manual_seed(seed)
    cfg = demo_tokenizer_config(**changes)
    quantizers = mlc_quantizers(cfg) if cfg.spatial_quantizer.kind == "mlc" else None
    return SweetTok(cfg, demo_proxy_config(), pixel_decoder=pixel_decoder, quantizers=quantizers)


def demo_clip(batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A (B, 3, 17, 64, 64) clip in [-0.5, 0.5]."""
    return torch.rand(batch, 3, 17, 64, 64, generator=torch.Generator().manual_seed(seed)) - 0.5


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """The demo model is tiny: one intra-op thread beats two that wait on each other (restored after)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
