"""Demo ablation configs (plain VQ codebooks; joint queries): they load, build, differ from the demo only
where they should, and (slow) train stage 1 and 2 for two steps each."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from cli_helpers import single_thread_torch
from sweettok.config import load_config, to_dataclass
from sweettok.models.tokenizer import SweetTok
from tokenizer_helpers import demo_clip, mlc_quantizers

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"ablation_vq": {"model.tokenizer.spatial_quantizer.kind": "vq",
                            "model.tokenizer.temporal_quantizer.kind": "vq"},
            "ablation_joint": {"model.tokenizer.query_layout": "joint"}}
CHANGED = {"experiment.name", "experiment.output_dir", "experiment.init_weight"}


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models: one intra-op thread beats two that wait on each other (restored after)."""
    previous = single_thread_torch()
    yield
    torch.set_num_threads(previous)


def _flat(cfg) -> dict:
    """Dotted key -> value of a whole config."""
    out = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ablation_differs_from_the_demo_only_where_it_should(variant, stage):
    demo = _flat(load_config(ROOT / "configs" / "demo" / f"{stage}.yaml"))
    ablation = _flat(load_config(ROOT / "configs" / "demo" / variant / f"{stage}.yaml"))
    changed = {k for k in demo if demo[k] != ablation[k]}
    for key, value in VARIANTS[variant].items():
        assert ablation[key] == value
    expected = set(VARIANTS[variant]) | {k for k in CHANGED if demo[k]}
    if variant == "ablation_vq":  # the VQ tables' size; the MLC prior paths are not read
        expected |= {k for k in changed if k.endswith(("quantizer.codebook_size", "quantizer.prior"))}
    if stage == "stage1":  # fewer steps than the main run, to fit the 30-minute demo (the configs say so)
        expected.add("training.max_train_steps")
        assert ablation["training.max_train_steps"] == 500 < demo["training.max_train_steps"]
    assert changed == expected
    assert ablation["experiment.output_dir"] == f"outputs/demo/{variant}/{stage}"
    if stage == "stage2":
        assert ablation["experiment.init_weight"] == f"outputs/demo/{variant}/stage1/export"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ablation_tokenizer_builds_and_encodes(variant):
    cfg = load_config(ROOT / "configs" / "demo" / variant / "stage2.yaml")
    tokenizer, proxy = to_dataclass(cfg.model.tokenizer), to_dataclass(cfg.model.proxy)
    quantizers = mlc_quantizers(tokenizer) if tokenizer.spatial_quantizer.kind == "mlc" else None
    model = SweetTok(tokenizer, proxy, pixel_decoder=True, quantizers=quantizers).eval()
    with torch.no_grad():
        out = model.encode(demo_clip(batch=1))
        video = model.decode_indices_to_pixels(out.indices)
    assert out.indices.shape == (1, 240) and video.shape == (1, 3, 17, 64, 64)
    if variant == "ablation_vq":
        assert model.layout.spatial_first_size == model.layout.temporal_second_size == 96
    else:
        assert hasattr(model.encoder, "joint_query_tokens") and not hasattr(model.encoder, "temporal_query_tokens")


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_ablation_trains_two_steps_per_stage(variant, tmp_path):
    """Stage 0 (a 2-step proxy), then the ablation's stage 1 and 2 for two steps each, chained by exports."""
    from test_stages import run, stage_config

    from sweettok.data.demo import DemoSpec, make_demo_dataset
    from sweettok.priors.prior import save_prior
    from tokenizer_helpers import tiny_priors

    make_demo_dataset(tmp_path / "data", DemoSpec(train_clips_per_class=1, test_clips_per_class=1, num_frames=17))
    spatial, temporal = tiny_priors(16)
    save_prior(spatial, tmp_path / "priors" / "spatial")
    save_prior(temporal, tmp_path / "priors" / "temporal")
    assets = {"root": tmp_path, "data": tmp_path / "data", "priors": tmp_path / "priors"}
    run(stage_config(assets, "proxy_train", tmp_path / "proxy"))
    proxy = f"model.proxy.weights={tmp_path / 'proxy' / 'export'}"
    stage1 = run(stage_config(assets, f"{variant}/stage1", tmp_path / "stage1", proxy,
                              "training.static_curriculum_steps=1"))
    stage2 = run(stage_config(assets, f"{variant}/stage2", tmp_path / "stage2", proxy,
                              f"experiment.init_weight={tmp_path / 'stage1' / 'export'}"))
    assert stage1.step == stage2.step == 2
    model = SweetTok.from_pretrained(tmp_path / "stage2" / "export")
    assert model.has_pixel_decoder and model.cfg.query_layout == VARIANTS[variant].get(
        "model.tokenizer.query_layout", "decoupled")
