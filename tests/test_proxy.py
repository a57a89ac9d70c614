"""Proxy VQ tokenizer: shapes, causality, decoding paths, stage-0 training behaviour, bf16."""

from pathlib import Path

import pytest
import torch

from sweettok.config import ProxyConfig, load_config, to_dataclass
from sweettok.models.proxy import ProxyTokenizer

REPO = Path(__file__).resolve().parents[1]


def demo_cfg(**overrides) -> ProxyConfig:
    """The demo preset from configs/demo/proxy.yaml (17×64×64 clips)."""
    cfg = to_dataclass(load_config(REPO / "configs/demo/proxy.yaml").model.proxy)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def _clip(batch=2, frames=17, size=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, size, size, generator=gen) - 0.5


def test_demo_shapes_and_api():
    torch.manual_seed(0)
    model = ProxyTokenizer(demo_cfg()).eval()
    video = _clip()
    codes = model.encode(video)
    assert codes.shape == (2, 5, 8, 8) and codes.dtype == torch.int64
    assert model.latent_shape() == (5, 8, 8)
    assert model.decode_codes(codes).shape == video.shape
    assert model.decode_codes(codes.flatten(1)).shape == video.shape  # flat (t h w) sequence
    logits = torch.randn(2, 256, 5, 8, 8)
    assert model.decode_soft(logits).shape == video.shape
    with pytest.raises(ValueError, match="logits"):
        model.decode_soft(torch.randn(2, 10, 5, 8, 8))
    with pytest.raises(ValueError, match="multiple"):
        model.encode(_clip(frames=16))


def test_decode_soft_with_peaked_logits_equals_decode_codes():
    torch.manual_seed(0)
    model = ProxyTokenizer(demo_cfg()).eval()
    codes = torch.randint(0, 256, (1, 5, 8, 8))
    logits = torch.nn.functional.one_hot(codes, 256).permute(0, 4, 1, 2, 3).float() * 1e4
    with torch.no_grad():
        torch.testing.assert_close(model.decode_soft(logits), model.decode_codes(codes), rtol=1e-4, atol=1e-4)


def test_codes_of_the_first_latent_frame_ignore_later_frames():
    torch.manual_seed(0)
    model = ProxyTokenizer(demo_cfg(peg_layout="correct")).eval()
    video = _clip(batch=1)
    later = video.clone()
    later[:, :, 1:] = torch.rand_like(later[:, :, 1:]) - 0.5
    with torch.no_grad():
        z, z_later = model.encode_latents(video), model.encode_latents(later)
    torch.testing.assert_close(z[:, 0], z_later[:, 0])
    assert torch.equal(model.encode(video)[:, 0], model.encode(later)[:, 0])
    assert not torch.allclose(z[:, 1:], z_later[:, 1:])


def test_original_peg_layout_leaks_later_frames_into_the_first():
    # documented property of the published architecture: the time-stack PEG reshape quirk mixes frames
    torch.manual_seed(0)
    model = ProxyTokenizer(demo_cfg(peg_layout="original")).eval()
    video = _clip(batch=1)
    later = video.clone()
    later[:, :, 1:] += 0.3
    with torch.no_grad():
        assert not torch.allclose(model.encode_latents(video)[:, 0], model.encode_latents(later)[:, 0])


def test_stage0_forward_losses_gradients_and_ema():
    torch.manual_seed(0)
    model = ProxyTokenizer(demo_cfg()).train()
    video = _clip(frames=5)
    before = model.codebook.embeddings.clone()
    out = model(video)
    assert out["reconstruction"].shape == video.shape and out["codes"].shape == (2, 2, 8, 8)
    assert out["commitment"].ndim == 0 and out["perplexity"] >= 1
    loss = (out["reconstruction"] - video).pow(2).mean() + out["commitment"]
    loss.backward()
    # the straight-through estimator carries the reconstruction gradient into the encoder
    assert model.encoder.patch_embed.first_frame.proj.weight.grad.abs().sum() > 0
    assert not torch.equal(model.codebook.embeddings, before)  # data init + EMA update
    assert model.codebook.usage.sum() == 2 * 2 * 8 * 8
    frozen = model.codebook.embeddings.clone()
    model.eval()
    model(video)
    assert torch.equal(model.codebook.embeddings, frozen)  # eval mode never updates


def test_loaded_codebook_is_not_reinitialised_in_train_mode():
    torch.manual_seed(0)
    source = ProxyTokenizer(demo_cfg(codebook_decay=1.0))
    model = ProxyTokenizer(demo_cfg(codebook_decay=1.0))
    model.load_state_dict(source.state_dict())
    model.train()(_clip(batch=1, frames=5))
    torch.testing.assert_close(model.codebook.embeddings, source.codebook.embeddings)  # decay 1: no change


@pytest.mark.parametrize("data_init", [True, False])
def test_nonfinite_input_leaves_the_ema_codebook_untouched(data_init):
    """A NaN batch makes no data init, EMA update or dead-code restart: the codes stay finite and unchanged."""
    from sweettok.models.codebook import EMACodebook

    torch.manual_seed(0)
    book = EMACodebook(16, 4, decay=0.5, data_init=data_init, dead_code_threshold=10.0).train()
    before = {k: v.clone() for k, v in book.state_dict().items()}
    z = torch.randn(2, 8, 4)
    z[0, 3, 1] = float("nan")
    book(z)
    assert all(torch.equal(book.state_dict()[k], v) for k, v in before.items() if k != "usage")
    assert torch.isfinite(book.embeddings).all() and book.needs_init == data_init
    book(torch.randn(2, 8, 4))  # a finite batch still trains
    assert not torch.equal(book.embeddings, before["embeddings"]) and torch.isfinite(book.embeddings).all()


def test_bf16_autocast_on_cpu():
    torch.manual_seed(0)
    model = ProxyTokenizer(demo_cfg()).eval()
    video = _clip(batch=1, frames=5)
    ref = model.encode(video)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes = model.encode(video)  # encode always runs in fp32
        out = model(video)
    assert torch.equal(codes, ref)
    z = torch.nn.functional.normalize(torch.randn(20000, 8), dim=-1)
    ref_codes = model.codebook.lookup(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model.codebook.lookup(z), ref_codes)  # bf16 distances would flip ~1.5% of codes
    assert out["reconstruction"].dtype == torch.bfloat16 and torch.isfinite(out["reconstruction"].float()).all()



def test_patch_input_norm_hides_a_flat_patch_brightness_unless_off():
    """Published layout: LayerNorm over each raw patch maps every flat grey patch to the same token."""
    from sweettok.models.patch_embed import CausalPatchEmbed

    dark, light = torch.full((1, 3, 5, 8, 8), -0.4), torch.full((1, 3, 5, 8, 8), -0.2)
    for input_norm, same in ((True, True), (False, False)):
        torch.manual_seed(0)
        embed = CausalPatchEmbed(16, 8, 4, input_norm=input_norm)
        torch.nn.init.normal_(embed.tubes.proj.bias)  # a trained bias: the output LayerNorm is no longer scale-blind
        torch.nn.init.normal_(embed.first_frame.proj.bias)
        with torch.no_grad():
            a, b = embed(dark), embed(light)
        assert torch.allclose(a, b, atol=1e-4) == same, input_norm
    model = ProxyTokenizer(demo_cfg(patch_input_norm=False))
    assert not any("norm_in" in key for key in model.state_dict())  # no dead weights in the export


def test_from_scratch_init_options_scale_the_code_signal():
    from sweettok.models.blocks import PEG

    torch.manual_seed(0)
    published = ProxyTokenizer(demo_cfg(post_quant_init_std=0.02, peg_zero_bias=False))
    demo = ProxyTokenizer(demo_cfg(post_quant_init_std=0.35, peg_zero_bias=True))
    pegs = lambda m: [mod.conv.bias for mod in m.modules() if isinstance(mod, PEG)]  # noqa: E731
    assert pegs(demo) and all(bool((b == 0).all()) for b in pegs(demo))
    assert all(bool((b != 0).any()) for b in pegs(published))  # PyTorch's default conv init
    assert published.post_quant.weight.std().item() == pytest.approx(0.02, rel=0.15)
    assert demo.post_quant.weight.std().item() == pytest.approx(0.35, rel=0.15)
    codes = torch.randint(0, 256, (2, 5, 8, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the code-dependent part of the decoder input grows with the init
        spread = lambda m: (m.post_quant(m.codebook.embed(codes))).std().item()  # noqa: E731
        assert spread(demo) > 10 * spread(published)
