"""scripts/eval_tokenizer.py and sweettok.eval.reconstruction on a random-init demo tokenizer and demo clips.

The tokenizer is the configs/demo/stage2.yaml model with tiny random MLC priors, saved as the
trainer saves it (export folder; a checkpoint folder with raw weights + ema.safetensors). The fast
tests use a small fake I3D (a fixed random projection) or --no-fvd; the real-I3D run is slow.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

from tokenizer_helpers import tiny_prior
from sweettok.config import load_config, to_dataclass
from sweettok.data.demo import DemoSpec, make_demo_dataset
from sweettok.eval import reconstruction as recon
from sweettok.eval.fvd import FVDFeatureExtractor
from sweettok.models.proxy import ProxyTokenizer
from sweettok.models.proxy_convert import save_proxy_safetensors
from sweettok.models.tokenizer import SweetTok
from sweettok.priors.prior import Prior, save_prior
from sweettok.training.checkpoint import export_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "eval_tokenizer.py"
NUM_CLIPS = 12  # one test clip per demo class
REPORT_KEYS = {"checkpoint", "weights", "reconstruction_path", "num_clips", "num_unique_clips", "num_clips_listed",
                "num_clips_skipped", "unreadable_files",
                "rfvd", "psnr", "psnr_exact_frames", "baseline_psnr", "ssim", "lpips", "codebook", "protocol",
                "num_processes", "batch_size_per_process", "seed", "videos", "seconds", "i3d_features"}
SEGMENTS = {"spatial_first", "spatial_second", "temporal_first", "temporal_second"}


def load_script():
    spec = importlib.util.spec_from_file_location("eval_tokenizer", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prior(num_first: int, num_second: int, pos: tuple[str, str], seed: int) -> Prior:
    return tiny_prior(num_first, num_second, 16, pos, seed)


class FakeI3D(nn.Module):
    """(B, 3, T, 224, 224) -> (B, 400): a fixed random projection of 4x4-pooled, time-averaged frames."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(48, 400)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(400, 48, generator=torch.Generator().manual_seed(0)))
            self.proj.bias.zero_()

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        pooled = nn.functional.adaptive_avg_pool3d(video, (1, 4, 4)).flatten(1)  # (B, 48)
        return self.proj(pooled)


def fake_extractor(*_args, **_kwargs) -> FVDFeatureExtractor:
    return FVDFeatureExtractor(FakeI3D(), batch_size=4)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """The demo model is tiny: one intra-op thread beats two that wait on each other (restored after)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")  # tests/conftest.py


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    """Demo clips, tiny priors, a stage-2 export, a stage-1 export + proxy export, a checkpoint folder."""
    root = tmp_path_factory.mktemp("eval_tokenizer")
    data, priors = root / "data", root / "priors"
    make_demo_dataset(data, DemoSpec(train_clips_per_class=1, test_clips_per_class=1, num_frames=17))
    save_prior(_prior(10, 12, ("adjective", "noun"), 0), priors / "spatial")
    save_prior(_prior(7, 9, ("adverb", "verb"), 1), priors / "temporal")
    cfg = load_config(ROOT / "configs" / "demo" / "stage2.yaml", [
        f"dataset.root={data}", f"dataset.train_list={data}/train.txt", f"dataset.eval_list={data}/test.txt",
        f"model.tokenizer.spatial_quantizer.prior={priors}/spatial",
        f"model.tokenizer.temporal_quantizer.prior={priors}/temporal",
        f"model.proxy.weights={root}/proxy", "eval.batch_size=5", "eval.num_videos_saved=2"])
    torch.manual_seed(0)
    tokenizer_cfg, proxy_cfg = to_dataclass(cfg.model.tokenizer), to_dataclass(cfg.model.proxy)
    stage2 = SweetTok(tokenizer_cfg, proxy_cfg, pixel_decoder=True).eval()
    export_model(stage2.state_dict(), cfg, root / "stage2" / "export")
    stage1 = SweetTok(tokenizer_cfg, proxy_cfg).eval()
    cfg1 = cfg.copy()
    cfg1.experiment.train_stage = 1
    export_model(stage1.state_dict(), cfg1, root / "stage1" / "export")
    proxy = ProxyTokenizer(proxy_cfg)
    save_proxy_safetensors(proxy, root / "proxy" / "model.safetensors")
    # a trainer checkpoint of stage 2: raw PixelTokenizer weights ("tokenizer." keys) + EMA of the trainable ones
    checkpoint = root / "stage2" / "checkpoint-5"
    checkpoint.mkdir()
    raw = {f"tokenizer.{k}": v.clone() for k, v in stage2.state_dict().items()}
    save_file(raw, str(checkpoint / "model.safetensors"))
    trainable = [f"tokenizer.{n}" for n, p in stage2.named_parameters() if n.startswith(("decoder.", "pixel."))]
    save_file({k: raw[k] + 1.0 for k in trainable}, str(checkpoint / "ema.safetensors"))
    (checkpoint / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (checkpoint / "meta.json").write_text(json.dumps({"step": 5}))
    return {"root": root, "data": data, "stage2": root / "stage2" / "export", "stage1": root / "stage1" / "export",
            "checkpoint": checkpoint, "trainable": trainable}


def run_main(args: list[str], monkeypatch, fake_i3d: bool = True) -> dict:
    script = load_script()
    monkeypatch.setattr("sweettok.eval.metrics.fetch_hub_checkpoint", lambda url: None)  # no LPIPS download in tests
    if fake_i3d:
        monkeypatch.setattr(script, "build_fvd_extractor", fake_extractor)
        monkeypatch.setattr(script, "find_i3d_weights", lambda path=None: Path("fake-i3d"))
    script.main(args)
    out = Path(args[args.index("--out") + 1])
    return json.loads((out / "report.json").read_text())


def test_end_to_end_report_has_every_key_and_counts_every_clip(assets, tmp_path, monkeypatch):
    ended = []
    monkeypatch.setattr("accelerate.Accelerator.end_training", lambda self: ended.append(True))
    report = run_main(["--checkpoint", str(assets["stage2"]), "--out", str(tmp_path / "eval")], monkeypatch)
    assert ended == [True]  # the process group is destroyed before exit (a gloo group left to it can abort)
    assert set(report) == REPORT_KEYS
    assert report["num_clips"] == report["num_unique_clips"] == report["num_clips_listed"] == NUM_CLIPS
    assert report["weights"] == "export (EMA)" and report["reconstruction_path"] == "pixel_decoder"
    assert isinstance(report["rfvd"], float) and report["rfvd"] > 0  # random weights: far from the inputs
    assert 0 < report["psnr"] < 60 and -1 <= report["ssim"] <= 1
    assert 10 < report["baseline_psnr"] < 40  # the demo clips as their background colour
    assert isinstance(report["lpips"], float) or report["lpips"].startswith("unavailable: ")
    assert set(report["codebook"]) == SEGMENTS
    for segment in report["codebook"].values():
        assert 0 < segment["usage"] <= 1 and 1 <= segment["perplexity"] <= segment["size"]
    protocol = report["protocol"]
    assert (protocol["num_frames"], protocol["resolution"], protocol["fvd_resolution"]) == (17, 64, 224)
    assert len(report["videos"]) == 4  # 2 clips x (mp4, gif)
    assert all(Path(p).is_file() and Path(p).stat().st_size > 0 for p in report["videos"])
    # per-clip I3D features for the class-accuracy ceiling: every clip once, with its class
    features = load_file(report["i3d_features"])
    assert features["real"].shape == features["reconstructed"].shape == (NUM_CLIPS, 400)
    assert sorted(features["clip_ids"].tolist()) == list(range(NUM_CLIPS))
    assert sorted(features["labels"].tolist()) == list(range(NUM_CLIPS))  # one test clip per demo class
    assert not torch.equal(features["real"], features["reconstructed"])


def test_real_features_cache_gives_the_same_report_without_computing_them_again(assets, tmp_path, monkeypatch):
    cache = tmp_path / "cache" / "real.safetensors"
    args = ["--checkpoint", str(assets["stage2"]), "--no-lpips", "--num-videos-saved", "0", "--real-features", str(cache)]
    first = run_main(args + ["--out", str(tmp_path / "a")], monkeypatch)
    assert cache.is_file()
    clips = []  # clips the (fake) I3D sees on the second run: the reconstructions only
    original = FVDFeatureExtractor.features
    monkeypatch.setattr(FVDFeatureExtractor, "features", lambda self, v: clips.append(v.shape[0]) or original(self, v))
    second = run_main(args + ["--out", str(tmp_path / "b")], monkeypatch)
    assert sum(clips) == NUM_CLIPS  # not 2 x NUM_CLIPS
    assert second["rfvd"] == first["rfvd"] and second["psnr"] == first["psnr"]
    a, b = (load_file(str(tmp_path / d / "i3d_features.safetensors")) for d in "ab")
    assert torch.equal(a["real"], b["real"]) and torch.equal(a["clip_ids"], b["clip_ids"])
    clips.clear()  # other clips (a subset of the list): another key, computed again
    run_main(args + ["--out", str(tmp_path / "c"), "--num-clips", "6"], monkeypatch)
    assert sum(clips) == 2 * 6


def test_real_features_alone_are_what_a_full_evaluation_computes(assets, tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script, "build_fvd_extractor", fake_extractor)
    monkeypatch.setattr(script, "find_i3d_weights", lambda path=None: Path("fake-i3d"))
    cache = tmp_path / "real.safetensors"
    script.main(["--config", str(assets["stage2"] / "config.yaml"), "--real-features", str(cache)])  # no tokenizer
    assert cache.is_file() and not (tmp_path / "eval").exists()
    plain = run_main(["--checkpoint", str(assets["stage2"]), "--no-lpips", "--num-videos-saved", "0",
                      "--out", str(tmp_path / "plain")], monkeypatch)
    clips = []
    original = FVDFeatureExtractor.features
    monkeypatch.setattr(FVDFeatureExtractor, "features", lambda self, v: clips.append(v.shape[0]) or original(self, v))
    cached = run_main(["--checkpoint", str(assets["stage2"]), "--no-lpips", "--num-videos-saved", "0",
                       "--out", str(tmp_path / "cached"), "--real-features", str(cache)], monkeypatch)
    assert sum(clips) == NUM_CLIPS and cached["rfvd"] == plain["rfvd"]  # read from the file, the same features
    with pytest.raises(SystemExit):
        script.parse_args(["--real-features", str(cache)])  # neither a checkpoint nor a config


def test_unreadable_clips_are_left_out_of_rfvd_and_reported(assets, tmp_path, monkeypatch):
    """Two listed videos cannot be read: their stand-ins are not counted as distinct clips anywhere."""
    data = assets["data"]
    lines = (data / "test.txt").read_text().splitlines()
    broken = []
    for i in (1, 4):
        relative, label = lines[i].split("\t")
        relative = str(Path(relative).with_name(f"broken_for_test_{i}.mp4"))  # same class folder, not a video
        (data / relative).write_bytes(b"not a video" * 50)
        lines[i] = f"{relative}\t{label}"
        broken.append(str(data / relative))
    (tmp_path / "test.txt").write_text("\n".join(lines) + "\n")
    report = run_main(["--checkpoint", str(assets["stage2"]), "--out", str(tmp_path / "eval"), "--no-lpips",
                       "--num-videos-saved", "0", f"dataset.eval_list={tmp_path / 'test.txt'}"], monkeypatch)
    assert report["num_clips_listed"] == NUM_CLIPS and report["num_clips_skipped"] == 2
    assert report["num_clips"] == report["num_unique_clips"] == NUM_CLIPS - 2
    assert report["unreadable_files"] == sorted(broken)
    assert isinstance(report["rfvd"], float)


def test_stage1_export_reconstructs_through_the_proxy_decoder(assets, tmp_path, monkeypatch):
    report = run_main(["--checkpoint", str(assets["stage1"]), "--out", str(tmp_path / "eval"), "--no-fvd",
                       "--no-lpips", "--num-clips", "3", "--num-videos-saved", "0"], monkeypatch)
    assert report["reconstruction_path"] == "proxy_argmax_codes"
    assert report["num_clips"] == 3 and report["rfvd"] == "skipped (--no-fvd)"
    assert report["lpips"] == "skipped (--no-lpips)" and report["videos"] == []


def test_checkpoint_folder_loads_ema_unless_no_ema(assets):
    ema = recon.load_tokenizer(assets["checkpoint"])
    raw = recon.load_tokenizer(assets["checkpoint"], use_ema=False)
    export = recon.load_tokenizer(assets["stage2"])
    assert (ema.weights, raw.weights) == ("checkpoint-5 EMA", "checkpoint-5 raw (non-EMA)")
    ema_state, raw_state, export_state = ema.model.state_dict(), raw.model.state_dict(), export.model.state_dict()
    for key in export_state:
        averaged = f"tokenizer.{key}" in assets["trainable"]
        assert torch.equal(raw_state[key], export_state[key])
        assert torch.equal(ema_state[key], export_state[key] + 1.0 if averaged else export_state[key]), key


def test_identical_reconstructions_give_psnr_inf_ssim_one_fvd_zero():
    layout_sizes, slices = {"a": 4, "b": 3}, {"a": slice(0, 2), "b": slice(2, 3)}
    metrics = recon.ReconstructionMetrics(layout_sizes, slices, fvd_extractor=fake_extractor())
    video = torch.rand(3, 3, 5, 16, 16, generator=torch.Generator().manual_seed(0)) - 0.5
    indices = torch.tensor([[0, 1, 2], [0, 0, 2], [3, 0, 0]])
    metrics.update(video, video.clone(), indices, torch.arange(3))
    result = metrics.compute()
    assert result["psnr"] == math.inf and result["psnr_exact_frames"] == 15
    assert result["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert result["rfvd"] == pytest.approx(0.0, abs=1e-6)
    probs = torch.tensor([4 / 6, 1 / 6, 1 / 6], dtype=torch.float64)  # "a": codes 0 (x4), 1, 3; code 2 unused
    assert result["codebook"]["a"] == {"size": 4, "usage": 0.75,
                                       "perplexity": pytest.approx(float(torch.exp(-(probs * probs.log()).sum())))}
    assert result["codebook"]["b"]["usage"] == pytest.approx(2 / 3)  # codes 2, 2, 0
    assert load_script().json_safe({"psnr": math.inf, "x": [math.nan]}) == {"psnr": "inf", "x": ["nan"]}


def test_baseline_psnr_is_the_clip_as_its_background_colour():
    video = torch.full((2, 3, 5, 16, 16), -0.3)
    video[1] = 0.1
    video[:, :, :, 4:8, 4:8] = 0.4  # a 4x4 square on a flat background (1/16 of the pixels)
    baseline = recon.background_baseline(video)
    assert torch.allclose(baseline[0, :, 0, 0, 0], torch.tensor(-0.3))  # the median is the background
    metrics = recon.ReconstructionMetrics({"a": 4}, {"a": slice(0, 1)})
    metrics.update(video, video.clone() * 0.9, torch.zeros(2, 1, dtype=torch.long), torch.arange(2))
    result = metrics.compute()
    expected = [10 * math.log10(1 / ((0.4 - bg) ** 2 / 16)) for bg in (-0.3, 0.1)]
    assert result["baseline_psnr"] == pytest.approx(sum(expected) / 2, abs=1e-6)
    assert result["psnr"] != result["baseline_psnr"]


def test_exact_frames_are_counted_not_averaged():
    per_frame = torch.tensor([20.0, math.inf, 30.0], dtype=torch.float64)
    assert recon.summarise_psnr(per_frame) == {"psnr": 25.0, "psnr_exact_frames": 1}
    # saturated frames clamp to the same values: the clamped reconstruction is exact there
    video = torch.full((1, 3, 2, 16, 16), -0.5)
    reconstruction = video.clone()
    reconstruction[:, :, 0] -= 0.3  # below black: clamps to black, exact
    reconstruction[:, :, 1] += 0.1
    metrics = recon.ReconstructionMetrics({"a": 2}, {"a": slice(0, 1)}, with_ssim=False)
    metrics.update(video, reconstruction, torch.zeros(1, 1, dtype=torch.long), torch.tensor([0]))
    result = metrics.compute()
    assert result["psnr_exact_frames"] == 1 and result["psnr"] == pytest.approx(20.0)  # mse 0.01


@pytest.mark.parametrize("case, expected", [
    ("missing", "checkpoint folder not found"),
    ("no_weights", "model.safetensors not found"),
    ("no_config", "config.yaml not found"),
    ("empty_list", "is empty"),
])
def test_errors_are_one_line(assets, tmp_path, case, expected, capsys):
    folder = tmp_path / "export"
    args = ["--checkpoint", str(folder), "--out", str(tmp_path / "eval"), "--no-fvd", "--no-lpips"]
    if case != "missing":
        folder.mkdir()
        for name in ("model.safetensors", "config.yaml"):
            if not (case == "no_weights" and name == "model.safetensors") and not (case == "no_config" and name == "config.yaml"):
                (folder / name).write_bytes((assets["stage2"] / name).read_bytes())
    if case == "empty_list":
        (tmp_path / "empty.txt").write_text("")
        args[1] = str(assets["stage2"])
        args.append(f"dataset.eval_list={tmp_path / 'empty.txt'}")
    with pytest.raises(SystemExit) as exit_info:
        load_script().main(args)
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and expected in message and "\n" not in message


def test_two_processes_count_each_clip_once(assets, tmp_path):
    """3 clips, batch 1, 2 processes: Accelerate repeats a clip on rank 1; the report counts 3 distinct clips."""
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(SCRIPT), "--checkpoint", str(assets["stage2"]), "--out", str(tmp_path / "eval"), "--no-fvd",
           "--no-lpips", "--num-clips", "3", "--batch-size", "1", "--num-videos-saved", "0"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["num_processes"] == 2
    assert report["num_clips"] == report["num_unique_clips"] == report["num_clips_listed"] == 3


@pytest.mark.slow
def test_real_i3d_run(assets, tmp_path, monkeypatch):
    report = run_main(["--checkpoint", str(assets["stage2"]), "--out", str(tmp_path / "eval"), "--num-clips", "4",
                       "--no-lpips"], monkeypatch, fake_i3d=False)
    assert isinstance(report["rfvd"], float) and report["rfvd"] > 0
    assert report["protocol"]["i3d_weights"] != "fake-i3d"


def test_launcher_forwards_arguments(assets, tmp_path):
    env = {**os.environ, "NUM_GPUS": "0", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", str(ROOT / "run_eval.sh"), "--tokenizer", str(assets["stage2"]), "--out",
                             str(tmp_path / "eval"), "--no-fvd", "--no-lpips", "--num-clips", "2",
                             "--num-videos-saved", "0", "eval.batch_size=2"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["num_clips"] == 2 and report["batch_size_per_process"] == 2
    assert report["checkpoint"] == str(assets["stage2"])


def test_launcher_names_a_missing_checkpoint(tmp_path):
    env = {**os.environ, "NUM_GPUS": "0", "CHECKPOINT": str(tmp_path / "nowhere")}
    result = subprocess.run(["bash", str(ROOT / "run_eval.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "nowhere/model.safetensors is missing" in result.stderr
