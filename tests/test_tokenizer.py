"""SweetTok tokenizer, demo preset: shapes, index round trips, equal cheap/redundant paths, training."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from tokenizer_helpers import (  # noqa: F401  (single_thread: autouse fixture)
    demo_clip, demo_model, demo_proxy_config, demo_tokenizer_config, mlc_quantizers, single_thread)

from sweettok.config import QuantizerConfig
from sweettok.models.attention import Attention
from sweettok.models.encoder import single_token_self_attention
from sweettok.models.tokenizer import SweetTok


@pytest.fixture(scope="module")
def model() -> SweetTok:
    return demo_model(pixel_decoder=True).eval()


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return demo_clip(batch=2)


@pytest.fixture(scope="module")
def encoded(model, clip):
    with torch.no_grad():
        return model.encode(clip)


def test_demo_shapes_and_layout(model, encoded):
    spatial, temporal = encoded.latents
    assert spatial.shape == (2, 16, 64) and temporal.shape == (2, 64, 64)
    layout = model.layout
    assert layout.num_indices == 16 * 3 + 64 * 3 == encoded.indices.shape[1]
    assert encoded.indices.dtype == torch.int64
    assert layout.sizes == {"spatial_first": 10, "spatial_second": 12, "temporal_first": 7, "temporal_second": 9}
    assert layout.pos_names["temporal_second"] == "verb"
    assert encoded.loss.ndim == 0 and torch.isfinite(encoded.loss)
    assert "spatial/codebook_loss" in encoded.logs and "temporal/commitment_loss" in encoded.logs


def test_decode_shapes(model, encoded):
    with torch.no_grad():
        logits = model.decode(encoded.latents)
        video = model.logits_to_pixels(logits)
    assert logits.shape == (2, 256, 5, 8, 8)
    assert video.shape == (2, 3, 17, 64, 64)


def test_indices_round_trip_exact(model, encoded):
    with torch.no_grad():
        latents = model.indices_to_latents(encoded.indices)
        for got, want in zip(latents, encoded.latents):
            assert torch.equal(got, want)
        assert torch.equal(model.decode_indices(encoded.indices), model.decode(encoded.latents))


def test_indices_follow_the_layout(model, encoded):
    """The flat indices are the quantizers' own indices packed by TokenLayout (one order everywhere)."""
    with torch.no_grad():
        spatial, temporal = model.encoder(demo_clip(batch=2))
        s_out = model.spatial_quantizer(F.normalize(model.spatial_pre_quant(spatial), dim=-1))
    s_first, s_second, _, _ = model.layout.unpack(encoded.indices)
    assert torch.equal(s_first, s_out.first_indices) and torch.equal(s_second, s_out.second_indices)


def test_words(model, encoded):
    words = model.indices_to_words(encoded.indices[1])
    layout = model.layout
    assert {k: len(v) for k, v in words.items()} == layout.lengths
    s_first, s_second, t_first, _ = layout.unpack(encoded.indices[1:2])
    assert words["spatial_first"][:2] == [f"adjective{int(i)}" for i in s_first[0, 0]]
    assert words["spatial_second"][3] == f"noun{int(s_second[0, 3])}"
    assert words["temporal_first"][5] == f"adverb{int(t_first[0, 2, 1])}"  # token-major: token 2, rank 1
    assert len(model.indices_to_words(encoded.indices)) == 2


def test_single_token_self_attention_equals_attention():
    torch.manual_seed(0)
    attn = Attention(32, heads=2, head_dim=16)
    torch.nn.init.normal_(attn.q_scale)
    x = torch.randn(5, 1, 32)
    torch.testing.assert_close(single_token_self_attention(attn, x), attn(x), rtol=1e-5, atol=1e-6)


def test_cheap_paths_equal_redundant(model, clip, encoded):
    with torch.no_grad():
        redundant = model.encode(clip, redundant=True)
        for cheap, slow in zip(encoded.latents, redundant.latents):
            torch.testing.assert_close(cheap, slow, rtol=1e-5, atol=1e-5)
        assert torch.equal(encoded.indices, redundant.indices)
        torch.testing.assert_close(model.decode(encoded.latents), model.decode(encoded.latents, redundant=True),
                                   rtol=1e-5, atol=1e-5)


def test_bf16_autocast_cpu(model, clip):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.encode(clip)
        logits = model.decode(out.latents)
    assert torch.isfinite(logits.float()).all() and logits.shape == (2, 256, 5, 8, 8)
    model.layout.validate(out.indices)
    with torch.no_grad():
        assert torch.equal(model.decode_indices(out.indices), model.decode(model.indices_to_latents(out.indices)))


def test_stage1_backward_reaches_every_trainable_parameter():
    """Every trainable parameter gets a gradient (DDP runs without find_unused_parameters)."""
    model = demo_model(seed=1).train()
    logits, out = model(demo_clip(batch=1, seed=1))
    target = torch.randint(0, 256, (1, 5, 8, 8))
    (F.cross_entropy(logits, target) + out.loss).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    unused_norms = {f"{stack}.norm_out.gamma" for stack in ("encoder.spatial_stack", "encoder.temporal_stack",
                                                            "decoder.spatial_latent_stack",
                                                            "decoder.temporal_latent_stack",
                                                            "decoder.temporal_cross.0", "decoder.temporal_cross.1")}
    single_token = {f"{stack}.layers.{i}.attn.{name}" for stack in ("encoder.temporal_query_stack",
                                                                    "decoder.temporal_latent_stack")
                    for i in range(2) for name in ("to_q.weight", "norm.gamma", "q_scale", "k_scale")}
    assert frozen == unused_norms | single_token


def test_stage2_frozen_encoder_trains_decoder_and_pixels():
    model = demo_model(seed=2, pixel_decoder=True).freeze_encoder().train()
    assert not model.encoder.training and model.decoder.training
    clip = demo_clip(batch=1, seed=2)
    out = model.encode(clip)
    assert not out.latents[0].requires_grad
    video = model.decode_pixels(out.latents)
    F.mse_loss(video, clip).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.decoder.head_out.weight.grad is not None and model.spatial_post_quant.weight.grad is not None
    assert model.pixel.post_quant.weight.grad is not None


@pytest.mark.parametrize("variant", ["vq", "joint"])
def test_ablation_variants(variant):
    if variant == "vq":
        quantizer = QuantizerConfig(kind="vq", code_dim=32, codebook_size=48, top_k=2)
        model = demo_model(spatial_quantizer=quantizer, temporal_quantizer=quantizer).eval()
        assert type(model.spatial_quantizer).__name__ == "VectorQuantizer"
    else:
        model = demo_model(query_layout="joint").eval()
        assert not hasattr(model.encoder, "temporal_stack")
        assert model.encoder.joint_query_tokens.shape == (16 + 64, 64)
    with torch.no_grad():
        out = model.encode(demo_clip(batch=2))
        assert out.latents[0].shape == (2, 16, 64) and out.latents[1].shape == (2, 64, 64)
        assert out.indices.shape == (2, 240)
        assert torch.equal(model.decode_indices(out.indices), model.decode(out.latents))


@pytest.mark.parametrize("change, message", [
    (dict(num_temporal_queries=32), "num_temporal_queries"),
    (dict(num_spatial_queries=15), "square"),
    (dict(encoder_spatial_query_block="ttt"), "depth"),
    (dict(decoder_temporal_layers=[3, 1]), "decoder_temporal_layers"),
    (dict(query_layout="mixed"), "query_layout"),
])
def test_config_errors(change, message):
    cfg = demo_tokenizer_config(**change)
    with pytest.raises(ValueError, match=message):
        SweetTok(cfg, demo_proxy_config(), quantizers=mlc_quantizers(cfg))


def test_proxy_mismatch_error():
    cfg = demo_tokenizer_config()
    proxy = dataclasses.replace(demo_proxy_config(), image_size=128)
    with pytest.raises(ValueError, match="model.proxy.image_size"):
        SweetTok(cfg, proxy, quantizers=mlc_quantizers(cfg))
