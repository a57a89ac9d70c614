"""Loading proxy weights: the published OmniTokenizer layout (manifest), Lightning nesting, errors, our export."""

import argparse
import datetime
from pathlib import Path

import pytest
import torch

from sweettok.config import ProxyConfig, load_config, to_dataclass
from sweettok.models.proxy import ProxyTokenizer
from sweettok.models.proxy_convert import (
    CheckpointMismatchError,
    load_proxy_checkpoint,
    omnitokenizer_to_ours,
    ours_to_omnitokenizer,
    read_proxy_state_dict,
    save_proxy_safetensors,
)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


def demo_cfg(**overrides) -> ProxyConfig:
    """The demo preset (configs/demo/proxy.yaml) with overrides."""
    cfg = to_dataclass(load_config(REPO / "configs/demo/proxy.yaml").model.proxy)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def _clip(batch=2, frames=17, size=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, size, size, generator=gen) - 0.5


def read_manifest(name: str) -> dict[str, tuple[list[int], str]]:
    """key -> (shape, dtype) from a reference TSV (header lines start with '#', then a column row)."""
    rows = {}
    for line in (FIXTURES / name).read_text().splitlines():
        if line.startswith("#") or line.startswith("key\t") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")[:3]
        rows[key] = ([int(s) for s in shape.strip("[]").split(",") if s], dtype)
    return rows


def fabricate(manifest: dict[str, tuple[list[int], str]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the manifest's keys, shapes and dtypes (int64 buffers: valid bias-table indices)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, (shape, dtype) in manifest.items():
        if dtype == "int64":
            out[key] = torch.randint(0, 225, shape, generator=gen)
        else:
            out[key] = torch.randn(shape, generator=gen) * 0.02
    return out


@pytest.fixture(scope="module")
def paper_model() -> ProxyTokenizer:
    return ProxyTokenizer(ProxyConfig(), initialise=False)


@pytest.fixture(scope="module")
def lightning_checkpoint(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """The published layout: proxy keys + dropped extras under 'state_dict', with a Namespace of hparams."""
    proxy = fabricate(read_manifest("omnitokenizer_vq_state_dict.tsv"))
    extras = fabricate(read_manifest("omnitokenizer_lightning_extra_keys.tsv"), seed=1)
    path = tmp_path_factory.mktemp("ckpt") / "imagenet_ucf.ckpt"
    torch.save({"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.5.4",
                "state_dict": {**proxy, **extras},
                "hyper_parameters": argparse.Namespace(n_codes=8192, enc_block="ttww", lr=3e-5)}, path)
    return path, proxy


def test_paper_preset_parameter_count(paper_model):
    counts = paper_model.parameter_counts()
    assert counts["total"] == 53_701_272
    assert counts["decoder"] == 26_856_416 and counts["encoder"] == 26_836_144


def test_manifest_keys_and_shapes_match_the_converted_model(paper_model):
    manifest = read_manifest("omnitokenizer_vq_state_dict.tsv")
    assert len(manifest) == 284
    original = ours_to_omnitokenizer(paper_model.state_dict())
    assert set(original) == set(manifest)
    for key, (shape, dtype) in manifest.items():
        assert list(original[key].shape) == shape, key
        assert str(original[key].dtype).removeprefix("torch.") == dtype, key
    assert omnitokenizer_to_ours(original).keys() == paper_model.state_dict().keys()
    assert sum(s for k, (sh, _) in manifest.items() for s in [torch.Size(sh).numel()]) == 53_701_272 + 165_888


def test_published_layout_loads_strictly_and_encodes(lightning_checkpoint):
    path, proxy = lightning_checkpoint
    model = load_proxy_checkpoint(path, ProxyConfig())
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    ours = model.state_dict()
    torch.testing.assert_close(ours["encoder.spatial.layers.0.peg.conv.weight"],
                               proxy["encoder.enc_spatial_transformer.layers.0.0.dsconv.weight"])
    torch.testing.assert_close(ours["codebook.cluster_size"], proxy["codebook.N"])
    torch.testing.assert_close(ours["decoder.temporal.layers.3.attn.unused_position_bias.net.2.bias"],
                               proxy["decoder.dec_temporal_transformer.layers.3.1.spatial_rel_pos_bias.net.2.bias"])
    codes = model.encode(_clip(batch=1, size=64))
    assert codes.shape == (1, 5, 8, 8)
    codes = codes[:, :2]  # 5 frames are enough for the decoding checks
    with torch.no_grad():
        pixels = model.decode_codes(codes)
        assert pixels.shape == (1, 3, 5, 64, 64)
        pixel_only = load_proxy_checkpoint(path, ProxyConfig(), with_encoder=False)
        assert not pixel_only.has_encoder
        torch.testing.assert_close(pixel_only.decode_codes(codes), pixels)


@pytest.mark.slow
def test_published_layout_encodes_a_full_clip(lightning_checkpoint):
    model = load_proxy_checkpoint(lightning_checkpoint[0], ProxyConfig())
    assert model.encode(_clip(batch=1, size=256)).shape == (1, 5, 32, 32)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    model = ProxyTokenizer(demo_cfg())
    state = ours_to_omnitokenizer(model.state_dict())
    del state["encoder.enc_temporal_transformer.layers.0.1.to_q.weight"]
    state["encoder.some_new_layer.weight"] = torch.zeros(1)
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_proxy_checkpoint(path, demo_cfg(peg_layout="original"))  # the published layout's PEG quirk
    msg = str(err.value)
    assert "missing keys (1): encoder.temporal.layers.0.attn.to_q.weight" in msg
    assert "unexpected keys (1): encoder.some_new_layer.weight" in msg
    with pytest.raises(CheckpointMismatchError, match="shape mismatches"):
        load_proxy_checkpoint(_save_ours(model, tmp_path), demo_cfg(width=32, heads=2))


def _save_ours(model, folder: Path) -> Path:
    path = folder / "proxy.safetensors"
    save_proxy_safetensors(model, path)
    return path


def test_safetensors_round_trip_keeps_codes_and_pixels(tmp_path):
    torch.manual_seed(0)
    model = ProxyTokenizer(demo_cfg()).eval()
    model.train()(_clip(batch=1, frames=5))  # data-init and update the codebook: buffers are not defaults
    model.eval()
    path = _save_ours(model, tmp_path)
    loaded = load_proxy_checkpoint(path, demo_cfg())
    video = _clip(batch=1, frames=5, seed=1)
    codes = model.encode(video)
    assert torch.equal(loaded.encode(video), codes)
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode_codes(codes), model.decode_codes(codes))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_plain_torch_state_dict_in_our_layout_loads(tmp_path):
    model = ProxyTokenizer(demo_cfg())
    path = tmp_path / "proxy.pt"
    torch.save(model.state_dict(), path)
    assert read_proxy_state_dict(path).keys() == model.state_dict().keys()


def test_unsafe_pickles_and_missing_files_give_clear_errors(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "when": datetime.datetime(2024, 1, 1)}, path)
    with pytest.raises(CheckpointMismatchError, match="refused to unpickle"):
        read_proxy_state_dict(path)
    with pytest.raises(FileNotFoundError, match="imagenet_ucf.ckpt"):
        read_proxy_state_dict(tmp_path / "nope.ckpt")
