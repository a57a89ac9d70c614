"""Generator pipeline: dump -> IndexDataset round trip, resumable and hash-checked dumps, stage 3, sample.py.

Assets: one demo clip per class and split in a temporary folder, tiny MLC priors in the real file
format, and a random-init stage-2 tokenizer (``configs/demo/stage2.yaml``) saved as an export.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState

from tokenizer_helpers import tiny_prior
from sweettok.config import ConfigError, load_config, to_dataclass
from sweettok.data.demo import DemoSpec, make_demo_dataset
from sweettok.data.index_dataset import IndexDataset, TokenizerMismatchError, read_shard, shard_name
from sweettok.data.video_reader import open_video
from sweettok.eval.class_accuracy import class_accuracy, index_histograms
from sweettok.models.tokenizer import SweetTok
from sweettok.priors.prior import Prior, save_prior
from sweettok.training.checkpoint import export_model
from sweettok.training.registry import get_task_factory
from sweettok.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """A module of ``scripts/`` (not a package) by path."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reset_accelerate() -> None:
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def _prior(num_first: int, num_second: int, pos: tuple[str, str], seed: int) -> Prior:
    return tiny_prior(num_first, num_second, 16, pos, seed)


def overrides(assets: dict) -> list[str]:
    """Point a demo config at the temporary data, priors, tokenizer and index folder."""
    data, priors = assets["data"], assets["priors"]
    return [f"dataset.root={data}", f"dataset.train_list={data}/train.txt", f"dataset.eval_list={data}/test.txt",
            f"model.tokenizer.spatial_quantizer.prior={priors}/spatial",
            f"model.tokenizer.temporal_quantizer.prior={priors}/temporal",
            f"experiment.init_weight={assets['tokenizer']}", f"dataset.index_dir={assets['index']}",
            "experiment.logger=none"]


def make_tokenizer(assets: dict, out: Path, seed: int) -> Path:
    """A random-init stage-2 demo tokenizer written as an export folder."""
    cfg = load_config(ROOT / "configs" / "demo" / "stage2.yaml", overrides(assets)[:5])
    torch.manual_seed(seed)
    model = SweetTok(to_dataclass(cfg.model.tokenizer), to_dataclass(cfg.model.proxy), pixel_decoder=True)
    return export_model(model.state_dict(), cfg, out)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
    reset_accelerate()


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("generator")
    make_demo_dataset(root / "data", DemoSpec(train_clips_per_class=1, test_clips_per_class=1, num_frames=17))
    save_prior(_prior(10, 12, ("adjective", "noun"), 0), root / "priors" / "spatial")
    save_prior(_prior(7, 9, ("adverb", "verb"), 1), root / "priors" / "temporal")
    assets = {"root": root, "data": root / "data", "priors": root / "priors", "tokenizer": root / "tokenizer",
              "index": root / "index"}
    make_tokenizer(assets, assets["tokenizer"], seed=0)
    return assets


def dump_args(assets: dict, *extra: str):
    script = load_script("dump_indices")
    return script, script.parse_args(["--config", str(ROOT / "configs" / "demo" / "generator_train.yaml"),
                                      "--shard-size", "5", "--batch-size", "4", "--num-workers", "0",
                                      *extra, *overrides(assets)])


@pytest.fixture(scope="module")
def dumped(assets) -> Path:
    reset_accelerate()
    script, args = dump_args(assets)
    return script.dump(args)


def test_dump_round_trip_equals_fresh_encode(assets, dumped):
    dataset = IndexDataset(dumped)
    index = json.loads((dumped / "index.json").read_text())
    assert len(dataset) == 12 and len(index["shards"]) == 3  # 12 clips in shards of 5, 5, 2
    assert dataset.num_classes == 12 and index["layout"] == dataset.layout.to_dict()
    script, args = dump_args(assets)
    videos = script.eval_dataset(load_config(args.config, args.overrides), "train")
    tokenizer = SweetTok.from_pretrained(assets["tokenizer"])
    with torch.no_grad():
        fresh = tokenizer.encode(torch.stack([videos[i]["video"] for i in range(len(videos))])).indices
    assert torch.equal(dataset.indices, fresh)
    for i in range(len(videos)):
        item = dataset[i]
        assert item["indices"].dtype == torch.long and item["indices"].shape == (tokenizer.layout.num_indices,)
        assert item["label"] == videos[i]["label"] and item["key"] == videos[i]["key"]


def test_rerun_skips_finished_shards(assets, dumped):
    stamps = {p.name: p.stat().st_mtime_ns for p in dumped.glob("shard-*.safetensors")}
    (dumped / shard_name(1)).unlink()
    reset_accelerate()
    script, args = dump_args(assets)
    script.dump(args)
    assert {p.name for p in dumped.glob("shard-*.safetensors")} == set(stamps)
    for name in (shard_name(0), shard_name(2)):
        assert (dumped / name).stat().st_mtime_ns == stamps[name]  # untouched
    assert read_shard(dumped / shard_name(1))[0].shape[0] == 5  # rewritten


def test_other_tokenizer_is_refused(assets, dumped, tmp_path):
    other = make_tokenizer(assets, tmp_path / "other_tokenizer", seed=1)
    reset_accelerate()
    script, args = dump_args(assets, "--tokenizer", str(other))
    with pytest.raises(TokenizerMismatchError, match="different tokenizer"):
        script.dump(args)
    with pytest.raises(TokenizerMismatchError):
        IndexDataset(dumped, expected_hash="0" * 16)


def test_missing_index_names_the_dump_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="dump_indices.py"):
        IndexDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="index.json"):
        IndexDataset(tmp_path / "empty")


def generator_config(assets: dict, out: Path, *extra: str):
    """configs/demo/generator_train.yaml shrunk to 2 steps of a 1-layer GPT."""
    return load_config(ROOT / "configs" / "demo" / "generator_train.yaml", [
        *overrides(assets), f"experiment.output_dir={out}", "experiment.log_every=1", "experiment.save_every=2",
        "experiment.generate_every=2", "training.max_train_steps=2", "training.per_gpu_batch_size=2",
        "training.num_generate=2", "lr_scheduler.warmup_steps=1", "model.generator.width=32",
        "model.generator.depth=1", "model.generator.heads=2", *extra])


@pytest.fixture(scope="module")
def trained(assets, dumped) -> Trainer:
    reset_accelerate()
    cfg = generator_config(assets, assets["root"] / "generator")
    trainer = Trainer(cfg, get_task_factory(3))
    trainer.fit()
    return trainer


def test_stage3_trains_two_steps_and_exports(assets, trained):
    out = assets["root"] / "generator"
    assert trained.step == 2 and (out / "checkpoint-2" / "meta.json").is_file()
    meta = json.loads((out / "export" / "generator.json").read_text())
    assert meta["num_classes"] == 12 and meta["tokenizer_hash"] == IndexDataset(assets["index"]).tokenizer_hash
    assert (out / "export" / "model.safetensors").is_file()
    gifs = list((out / "samples").glob("generator_samples_*.gif"))  # generate hook decoded two classes
    assert gifs
    from PIL import Image

    with Image.open(gifs[0]) as gif:
        assert gif.info["duration"] == 120  # 8 fps in GIF's 10 ms units (imageio's mimsave stored 0)
    logged = (out / "train.log").read_text()
    assert "train/loss" in logged and "train/accuracy" in logged


def test_stage3_refuses_a_class_count_mismatch(assets, dumped, tmp_path):
    reset_accelerate()
    cfg = generator_config(assets, tmp_path / "gen", "model.generator.num_classes=5")
    with pytest.raises(ConfigError, match="num_classes"):
        Trainer(cfg, get_task_factory(3))


def test_sample_script_writes_decodable_mp4_per_class(assets, trained, tmp_path):
    names = IndexDataset(assets["index"]).class_names
    out = tmp_path / "samples"
    code = load_script("sample").main(["--checkpoint", str(assets["root"] / "generator" / "export"), "--out", str(out),
                                       "--num-per-class", "1", "--classes", names[0], names[3], "--batch-size", "2",
                                       "--seed", "3", "--device", "cpu"])
    assert code == 0
    for name in (names[0], names[3]):
        with open_video(out / name / f"{name}_0.mp4") as reader:
            assert reader.num_frames == 17 and reader.get_frames([0]).shape == (1, 64, 64, 3)
    report = json.loads((out / "samples.json").read_text())
    assert [r["class"] for r in report["samples"]] == [names[0], names[3]]


def test_class_accuracy_nearest_neighbour():
    reference = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    result = class_accuracy(torch.tensor([[1.0, 0.05], [0.1, 1.0]]), torch.tensor([0, 0]), reference,
                            torch.tensor([0, 1, 0]), ["a", "b"])
    assert result["predictions"] == [0, 1] and result["accuracy"] == 0.5 and result["per_class"] == {"a": 0.5}
    # leave-one-out: row 0's own vote is gone, its nearest other neighbour (row 2, label 0) decides
    loo = class_accuracy(reference, torch.tensor([0, 1, 0]), reference, torch.tensor([0, 1, 0]), leave_one_out=True)
    assert loo["predictions"] == [0, 0, 0]


def test_index_histograms_sum_to_one_per_segment(dumped):
    dataset = IndexDataset(dumped)
    hist = index_histograms(dataset.indices[:3], dataset.layout)
    assert hist.shape == (3, sum(dataset.layout.sizes.values()))
    assert torch.allclose(hist.sum(1), torch.full((3,), 4.0, dtype=hist.dtype))  # one per segment


def test_tokenizer_hash_ignores_fields_left_at_their_default():
    from dataclasses import dataclass

    from sweettok.data.index_dataset import _non_default

    @dataclass
    class Old:
        width: int = 8
        prior: str = ""

    @dataclass
    class New:  # a field added later whose default keeps the old behaviour
        width: int = 8
        prior: str = ""
        entropy_weight: float = 0.0

    assert _non_default(Old(width=16)) == _non_default(New(width=16)) == {"width": 16}
    assert _non_default(New(width=16, entropy_weight=0.1)) != _non_default(Old(width=16))
