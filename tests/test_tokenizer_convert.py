"""Original SweetTok_Compact state dicts (from the manifest) load strictly; export folders round-trip."""

from __future__ import annotations

import functools
import re
import dataclasses
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tokenizer_helpers import (  # noqa: F401  (single_thread: autouse fixture)
    demo_clip, demo_model, demo_proxy_config, demo_tokenizer_config, single_thread, tiny_prior, tiny_priors)

from sweettok.config import Config, ProxyConfig, QuantizerConfig, TokenizerConfig
from sweettok.models.proxy_convert import CheckpointMismatchError
from sweettok.models.tokenizer import SweetTok
from sweettok.models.tokenizer_convert import build_from_original, load_pretrained, original_to_ours
from sweettok.priors.prior import save_prior
from sweettok.quantizers.mlc import MLCQuantizer
from sweettok.training.checkpoint import export_model

MANIFEST = Path(__file__).parent / "fixtures" / "sweettok_compact_state_dict.tsv"


def manifest_rows() -> list[tuple[str, list[int], str, str]]:
    """(key, shape, dtype, stage) of every manifest row."""
    rows = []
    for line in MANIFEST.read_text().splitlines():
        if line.startswith("#") or line.startswith("key\t") or not line.strip():
            continue
        key, shape, dtype, _kind, _numel, stage = line.split("\t")
        rows.append((key, [int(s) for s in shape.strip("[]").split(",") if s], dtype, stage))
    return rows


@functools.lru_cache(maxsize=1)
def _stage2_state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {key: torch.randint(0, 10, shape, generator=g) if dtype == "int64" else torch.rand(shape, generator=g)
            for key, shape, dtype, _ in manifest_rows()}


def fabricated_state_dict(stage: int) -> dict[str, torch.Tensor]:
    """The original layout with random values (stage 2 adds the pixel_* rows); a fresh dict of shared tensors."""
    second_only = {key for key, _, _, row_stage in manifest_rows() if row_stage == "2"}
    return {k: v for k, v in _stage2_state_dict().items() if stage == 2 or k not in second_only}


def paper_quantizers() -> tuple[MLCQuantizer, MLCQuantizer]:
    """Paper-width MLC quantizers over tiny priors with the manifest's 64-d word vectors."""
    cfg = QuantizerConfig()
    return (MLCQuantizer(cfg, tiny_prior(6, 7, 64, ("adjective", "noun"))),
            MLCQuantizer(cfg, tiny_prior(5, 8, 64, ("adverb", "verb"))))


def test_manifest_counts():
    rows = manifest_rows()
    assert len(rows) == 968 and sum(r[3] == "1+2" for r in rows) == 826


@pytest.mark.parametrize("stage", [1, 2])
def test_original_state_dict_loads_strictly(stage):
    original = fabricated_state_dict(stage)
    model = build_from_original(original, TokenizerConfig(), ProxyConfig(), quantizers=paper_quantizers())
    assert model.has_pixel_decoder == (stage == 2)
    assert model.cfg.peg_layout == "original"  # the published temporal stack was trained with the quirk
    assert not any(m.training for m in model.modules())  # GCN dropout off: deterministic indices
    assert not any(p.requires_grad for p in model.parameters())
    ours = model.state_dict()
    assert len(ours) == len(original) - 4  # the never-called code_book_mapping MLP is dropped
    torch.testing.assert_close(ours["encoder.spatial_query_tokens"], original["latent_spatial_tokens"])
    torch.testing.assert_close(ours["decoder.head_out.weight"], original["decoder.ffn.2.weight"][:, :, 0, 0])
    torch.testing.assert_close(ours["encoder.temporal_stack.layers.3.peg.conv.weight"],
                               original["encoder.enc_temporal_transformer.layers.3.0.dsconv.weight"])
    torch.testing.assert_close(ours["spatial_quantizer.gcn.conv1.lin.weight"],
                               original["quantize.gcn.conv1.lin.weight"])
    if stage == 2:
        torch.testing.assert_close(ours["pixel.codebook.embeddings"], original["pixel_codebook.embeddings"])
        torch.testing.assert_close(ours["pixel.codebook.cluster_size"], original["pixel_codebook.N"])
        torch.testing.assert_close(ours["pixel.post_quant.weight"], original["pixel_post_vq_conv.1.weight"])
        torch.testing.assert_close(ours["pixel.decoder.patch_unembed.tubes.weight"],
                                   original["pixel_decoder.to_pixels.0.weight"])


def test_mismatched_original_state_dict_is_named():
    original = fabricated_state_dict(1)
    original.pop("decoder.mask_token")
    original["decoder.ffn.0.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointMismatchError, match="decoder.mask_token.*decoder.head_hidden.bias"):
        build_from_original(original, TokenizerConfig(), ProxyConfig(), quantizers=paper_quantizers())


def test_converter_covers_every_manifest_key():
    ours = original_to_ours(fabricated_state_dict(2))
    assert not any(k.startswith(("latent_", "pre_vq", "post_vq", "quantize.", "pixel_")) for k in ours)
    assert not any(re.search(r"\.layers\.\d+\.\d\.", k) for k in ours)  # no original numbered sub-layers


def _export(tmp_path: Path, model: SweetTok) -> Path:
    """Write priors (relative paths) and an export folder as the trainer does; return the folder."""
    spatial, temporal = tiny_priors()
    save_prior(spatial, tmp_path / "priors" / "spatial")
    save_prior(temporal, tmp_path / "priors" / "temporal")
    cfg = OmegaConf.structured(Config)
    tokenizer = demo_tokenizer_config()
    cfg.model.tokenizer = OmegaConf.structured(tokenizer)
    cfg.model.tokenizer.spatial_quantizer.prior = "priors/spatial"
    cfg.model.tokenizer.temporal_quantizer.prior = "priors/temporal"
    cfg.model.proxy = OmegaConf.structured(demo_proxy_config())
    return export_model(model.state_dict(), cfg, tmp_path / "export")


def test_from_pretrained_round_trip(tmp_path, monkeypatch):
    model = demo_model(seed=3, pixel_decoder=True).eval()
    folder = _export(tmp_path, model)
    monkeypatch.chdir(tmp_path)
    loaded = SweetTok.from_pretrained("export")
    assert loaded.has_pixel_decoder and not loaded.training
    clip = demo_clip(batch=2, seed=3)
    with torch.no_grad():
        want, got = model.encode(clip), loaded.encode(clip)
        assert torch.equal(want.indices, got.indices)
        assert torch.equal(model.decode_indices(want.indices), loaded.decode_indices(got.indices))
    assert load_pretrained(folder).cfg == loaded.cfg


def test_from_pretrained_finds_relative_priors_from_another_directory(tmp_path, monkeypatch):
    """Relative prior paths resolve at export time and the priors are copied in: the export loads from elsewhere."""
    model = demo_model(seed=5).eval()
    folder = _export(tmp_path, model)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    loaded = SweetTok.from_pretrained(folder)
    assert Path(loaded.cfg.spatial_quantizer.prior) == (folder / "priors" / "spatial").resolve()
    clip = demo_clip(batch=1, seed=5)
    with torch.no_grad():
        assert torch.equal(model.encode(clip).indices, loaded.encode(clip).indices)


def test_from_pretrained_missing_prior_is_named(tmp_path, monkeypatch):
    folder = _export(tmp_path, demo_model(seed=4))
    (folder / "priors" / "temporal.json").unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="export/priors/temporal.json is missing"):
        SweetTok.from_pretrained(folder)


def test_from_pretrained_missing_folder_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        SweetTok.from_pretrained(tmp_path / "nowhere")


def test_pixel_decoder_from_proxy_checkpoint(tmp_path):
    """Stage-2 init: the proxy's decoding half is copied into ``pixel``; pixels equal the proxy's soft decode."""
    from sweettok.models.proxy import ProxyTokenizer
    from sweettok.models.proxy_convert import save_proxy_safetensors
    from sweettok.models.tokenizer_convert import load_pixel_decoder_from_proxy

    torch.manual_seed(5)
    proxy = ProxyTokenizer(demo_proxy_config()).eval()
    save_proxy_safetensors(proxy, tmp_path / "proxy.safetensors")
    model = demo_model(seed=5, pixel_decoder=True).eval()
    load_pixel_decoder_from_proxy(model, tmp_path / "proxy.safetensors")
    torch.testing.assert_close(model.pixel.codebook.embeddings, proxy.codebook.embeddings)
    logits = torch.randn(1, 256, 5, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model.logits_to_pixels(logits), proxy.decode_soft(logits))


def test_build_for_stage2(tmp_path):
    """Stage-1 export + proxy checkpoint -> stage-2 model: same indices, proxy pixels, frozen encoder."""
    from sweettok.models.proxy import ProxyTokenizer
    from sweettok.models.proxy_convert import save_proxy_safetensors
    from sweettok.models.tokenizer_convert import build_for_stage2

    stage1 = demo_model(seed=6).eval()
    folder = _export(tmp_path, stage1)
    torch.manual_seed(6)
    proxy = ProxyTokenizer(demo_proxy_config()).eval()
    save_proxy_safetensors(proxy, tmp_path / "proxy.safetensors")
    cfg = demo_tokenizer_config(
        spatial_quantizer=dataclasses.replace(demo_tokenizer_config().spatial_quantizer,
                                              prior=str(tmp_path / "priors" / "spatial")),
        temporal_quantizer=dataclasses.replace(demo_tokenizer_config().temporal_quantizer,
                                               prior=str(tmp_path / "priors" / "temporal")))
    model = build_for_stage2(folder, cfg, demo_proxy_config(), tmp_path / "proxy.safetensors").train()
    assert model.encoder_frozen and not model.encoder.training
    assert not any(p.requires_grad for p in model.encoder.parameters())
    clip = demo_clip(batch=1, seed=6)
    with torch.no_grad():
        assert torch.equal(model.encode(clip).indices, stage1.encode(clip).indices)
    torch.testing.assert_close(model.pixel.decoder.spatial.layers[0].ff.proj_in.weight,
                               proxy.decoder.spatial.layers[0].ff.proj_in.weight)
