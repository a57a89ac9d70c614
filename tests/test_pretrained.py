"""Self-contained export folders: priors carried and hashed, copies load from anywhere, old layout, hub ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

from cli_helpers import write_tiny_export
from sweettok.config import Config, save_config
from sweettok.models import pretrained
from sweettok.models.pretrained import load_pretrained, save_pretrained
from sweettok.models.tokenizer import SweetTok
from sweettok.priors.prior import load_prior, save_prior
from tokenizer_helpers import demo_clip, demo_model, demo_proxy_config, demo_tokenizer_config, tiny_priors


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """A stage-2 tiny export whose priors were written outside it (as codebook_priors/ is)."""
    return write_tiny_export(tmp_path_factory.mktemp("pretrained"), pixel_decoder=True, seed=2)


def _indices(model: SweetTok) -> torch.Tensor:
    with torch.no_grad():
        return model.encode(demo_clip(batch=1, seed=7)).indices


def test_export_carries_its_priors_with_hashes(export):
    manifest = json.loads((export / "export.json").read_text())
    assert manifest["format"] == "sweettok-export" and manifest["version"] == 2
    assert sorted(manifest["files"]) == ["priors/spatial.json", "priors/spatial.safetensors",
                                         "priors/temporal.json", "priors/temporal.safetensors"]
    for name, digest in manifest["files"].items():
        assert pretrained.file_sha256(export / name) == digest
    config = OmegaConf.load(export / "config.yaml")
    assert config.model.tokenizer.spatial_quantizer.prior == "priors/spatial"
    original = load_prior(export.parents[1] / "priors" / "spatial")
    copied = load_prior(export / "priors" / "spatial")
    assert copied.first_words == original.first_words and torch.equal(copied.vectors, original.vectors)
    assert torch.equal(copied.edges, original.edges) and "path" not in json.loads(
        (export / "priors" / "spatial.json").read_text())["meta"]


def test_copied_export_loads_from_another_directory(export, tmp_path, monkeypatch):
    want = _indices(load_pretrained(export))
    copy = tmp_path / "moved" / "export"
    shutil.copytree(export, copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    model = SweetTok.from_pretrained(copy)
    assert Path(model.cfg.spatial_quantizer.prior) == (copy / "priors" / "spatial").resolve()
    assert torch.equal(_indices(model), want)


def test_rebuilt_source_priors_do_not_change_an_export(tmp_path):
    """Rebuilding the priors at the path the run named leaves the export's codes as they were."""
    export = write_tiny_export(tmp_path, pixel_decoder=False, seed=3)
    want = _indices(load_pretrained(export))
    spatial, _ = tiny_priors()
    spatial.vectors = torch.randn_like(spatial.vectors)
    save_prior(spatial, tmp_path / "priors" / "spatial")
    assert torch.equal(_indices(load_pretrained(export)), want)


def test_hash_mismatch_is_refused_in_one_line(export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    record = json.loads((copy / "priors" / "temporal.json").read_text())
    record["second_words"][0] = "tampered"
    (copy / "priors" / "temporal.json").write_text(json.dumps(record))
    with pytest.raises(ValueError) as err:
        load_pretrained(copy)
    message = str(err.value)
    assert "\n" not in message and "priors/temporal.json does not match the SHA-256" in message


def test_interrupted_export_is_refused(export, tmp_path):
    copy = tmp_path / "export"
    shutil.copytree(export, copy)
    (copy / "export.json").unlink()
    with pytest.raises(ValueError, match="no export.json: the export was interrupted"):
        load_pretrained(copy)


def test_old_layout_export_still_loads_and_can_be_made_self_contained(tmp_path, monkeypatch):
    """An export of the old layout (weights + config naming priors relative to the repository) loads, with a
    warning; ``save_pretrained`` turns it into a self-contained folder with the same codes."""
    spatial, temporal = tiny_priors()
    save_prior(spatial, tmp_path / "repo" / "priors" / "spatial")
    save_prior(temporal, tmp_path / "repo" / "priors" / "temporal")
    cfg = OmegaConf.structured(Config)
    cfg.model.tokenizer = OmegaConf.structured(demo_tokenizer_config())
    cfg.model.tokenizer.spatial_quantizer.prior = "priors/spatial"
    cfg.model.tokenizer.temporal_quantizer.prior = "priors/temporal"
    cfg.model.proxy = OmegaConf.structured(demo_proxy_config())
    model = demo_model(seed=4).eval()
    old = tmp_path / "repo" / "outputs" / "export"
    old.mkdir(parents=True)
    save_file(model.state_dict(), str(old / "model.safetensors"))
    save_config(cfg, old / "config.yaml")
    monkeypatch.chdir(tmp_path)  # not the repository: the prior paths resolve from the export's parents
    loaded = load_pretrained(old)
    assert torch.equal(_indices(loaded), _indices(model))
    new = loaded.save_pretrained(tmp_path / "new")
    shutil.rmtree(tmp_path / "repo")
    again = load_pretrained(new)
    assert torch.equal(_indices(again), _indices(model)) and (new / "export.json").is_file()
    again.save_pretrained(tmp_path / "newer")  # a loaded self-contained export saves again
    assert torch.equal(_indices(load_pretrained(tmp_path / "newer")), _indices(model))
    again.save_pretrained(new)  # ... also over itself (its priors are read before the folder is rewritten)
    assert torch.equal(_indices(load_pretrained(new)), _indices(model))


def test_from_pretrained_is_eval_without_gradients(export):
    model = SweetTok.from_pretrained(export)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    video = model.decode_indices_to_pixels(_indices(model))  # no torch.no_grad() here
    assert not video.requires_grad


def test_hub_id_goes_through_snapshot_download(export, monkeypatch):
    import huggingface_hub

    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id: asked.append(repo_id) or str(export))
    model = load_pretrained("someone/sweettok-demo")
    assert asked == ["someone/sweettok-demo"] and model.has_pixel_decoder


def test_hub_id_offline_is_one_line(monkeypatch, tmp_path):
    import huggingface_hub

    def offline(repo_id):
        raise OSError("outgoing traffic has been disabled. To enable look-ups set HF_HUB_OFFLINE=0")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load_pretrained("someone/sweettok-demo")
    message = str(err.value)
    assert "\n" not in message and "someone/sweettok-demo not found locally" in message
    assert "OSError: outgoing traffic has been disabled)" in message


def test_non_tokenizer_exports_carry_no_priors(tmp_path):
    """The generator and proxy exports go through the same writer but need no word graph."""
    cfg = OmegaConf.structured(Config)
    cfg.model.tokenizer.spatial_quantizer.prior = "nowhere/spatial"  # never read: no quantizer weights
    folder = save_pretrained({"head.weight": torch.zeros(2, 2)}, cfg, tmp_path / "export")
    assert json.loads((folder / "export.json").read_text())["files"] == {}
    assert not (folder / "priors").exists()
