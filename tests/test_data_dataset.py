"""Clip sampling, short/corrupt videos, transforms and DataLoader use of VideoDataset."""

from __future__ import annotations

import logging
import pickle
import random

import numpy as np
import pytest
import torch
from accelerate.data_loader import prepare_data_loader
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, DistributedSampler

from sweettok.config import DatasetConfig
from sweettok.data.lists import DatasetError
from sweettok.data.sampling import frame_step, plan_clip
from sweettok.data.transforms import VideoTransform
from sweettok.data.video_dataset import VideoDataset, build_dataloader
from sweettok.data.video_writer import write_video


def brightness_video(path, num_frames, size=32, fps=10):
    """Frame t is a flat grey of level 10 + 8 t (so the frame index can be read back)."""
    levels = (10 + 8 * np.arange(num_frames)).clip(0, 255).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (num_frames, size, size, 3)).copy()
    return write_video(path, frames, fps=fps, lossless=True)


def make_set(tmp_path, lengths: dict[str, int], **fields):
    """A tsv-listed set with one video per name (length in frames); returns the config."""
    lines = []
    for i, (name, length) in enumerate(lengths.items()):
        relative = f"videos/train/Class{i % 2}/{name}"
        if length > 0:
            brightness_video(tmp_path / relative, length)
        else:  # corrupt: random bytes under a video name
            (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / relative).write_bytes(np.random.default_rng(i).bytes(2000))
        lines.append(f"{relative}\t{i % 2 + 1}")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    base = DatasetConfig(root=str(tmp_path), train_list=str(tmp_path / "train.txt"),
                         eval_list=str(tmp_path / "train.txt"), num_frames=17, resolution=32, num_workers=0)
    return OmegaConf.merge(OmegaConf.structured(base), fields)


def frame_levels(video: torch.Tensor, mean=0.5, std=1.0) -> np.ndarray:
    """Back from a normalised (C, T, H, W) clip to the grey level of each frame."""
    return ((video * std + mean) * 255).mean(dim=(0, 2, 3)).round().numpy()


def test_plan_clip_train_random_eval_centre_and_stride():
    rng = random.Random(0)
    starts = {plan_clip(100, 17, 1.0, True, rng=rng).indices[0] for _ in range(50)}
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 83
    centre = plan_clip(100, 17, 1.0, False)
    assert centre.indices == list(range(42, 59)) and not centre.padded
    strided = plan_clip(100, 5, 3.0, False)
    assert np.all(np.diff(strided.indices) == 3)
    assert frame_step(30.0, 1, 15.0) == 2.0 and frame_step(30.0, 2, 0.0) == 2.0
    assert plan_clip(100, 4, frame_step(30.0, 1, 8.0), False).indices[:4] == [44, 48, 52, 55]


@pytest.mark.parametrize(
    "rule, expected",
    [("repeat_last", [0, 1, 2, 3, 4, 4, 4]), ("loop", [0, 1, 2, 3, 4, 0, 1]), ("zero", [0, 1, 2, 3, 4, 4, 4])],
)
def test_plan_clip_pads_short_videos_by_rule(rule, expected):
    plan = plan_clip(5, 7, 1.0, True, rule, random.Random(0))
    assert plan.indices == expected and plan.num_valid == 5 and plan.padded


@pytest.mark.parametrize("rule", ["repeat_last", "zero", "loop"])
def test_short_video_is_padded_and_counted(tmp_path, rule):
    dataset = VideoDataset(make_set(tmp_path, {"short.mp4": 8}, short_video=rule), "eval")
    levels = frame_levels(dataset[0]["video"])
    assert len(levels) == 17 and dataset.stats["padded"] == 1
    real = 10 + 8 * np.arange(8)
    assert np.abs(levels[:8] - real).max() <= 2
    tail = {"repeat_last": np.full(9, real[-1]), "zero": np.zeros(9), "loop": real[np.arange(8, 17) % 8]}[rule]
    assert np.abs(levels[8:] - tail).max() <= 2


def test_eval_clip_is_centred_and_train_clip_is_consecutive(tmp_path):
    cfg = make_set(tmp_path, {"long.mp4": 25})
    levels = frame_levels(VideoDataset(cfg, "eval")[0]["video"])
    assert np.abs(levels - (10 + 8 * np.arange(4, 21))).max() <= 2  # 25 // 2 - 17 // 2 = 4
    train_levels = frame_levels(VideoDataset(cfg, "train")[0]["video"])
    assert np.abs(np.diff(train_levels) - 8).max() <= 2


def test_train_draws_depend_on_seed_epoch_index_not_on_global_rng(tmp_path):
    """The clip start of item i is a pure function of (seed, epoch, i): global RNG state and load order do not matter."""
    cfg = make_set(tmp_path, {"long.mp4": 60}, num_frames=4)
    dataset = VideoDataset(cfg, "train", seed=5)
    starts = {}
    for epoch in range(6):
        dataset.set_epoch(epoch)
        torch.manual_seed(epoch)  # scrambles the global RNG between the two loads
        first = dataset[0]["video"]
        torch.rand(7)
        assert torch.equal(first, dataset[0]["video"])
        starts[epoch] = frame_levels(first)[0]
    assert len(set(starts.values())) > 1  # but another epoch draws another start
    again = VideoDataset(cfg, "train", seed=5)
    again.set_epoch(3)
    assert frame_levels(again[0]["video"])[0] == starts[3]


def test_corrupt_video_is_skipped_logged_once_and_counted(tmp_path, caplog):
    cfg = make_set(tmp_path, {"good_a.mp4": 20, "broken.mp4": 0, "good_b.mp4": 20})
    dataset = VideoDataset(cfg, "train")
    with caplog.at_level(logging.WARNING, logger="sweettok.data.video_dataset"):
        first, second = dataset[1], dataset[1]
    assert first["key"] in {"good_a", "good_b"} and first["key"] == second["key"]  # deterministic substitute
    assert first["video"].shape == (3, 17, 32, 32)
    assert dataset.stats["skipped"] == 2
    warnings = [r for r in caplog.records if "broken.mp4" in r.getMessage()]
    assert len(warnings) == 1
    epoch = [dataset[i]["key"] for i in range(len(dataset))]  # a full pass does not crash
    assert "broken" not in epoch


def test_entirely_unreadable_dataset_raises_clear_error(tmp_path):
    dataset = VideoDataset(make_set(tmp_path, {"a.mp4": 0, "b.mp4": 0}, max_retries=4), "train")
    with pytest.raises(DatasetError, match="dataset looks unreadable"):
        dataset[0]


def test_crop_squash_shapes_and_normalisation_range():
    frames = torch.randint(0, 256, (5, 48, 80, 3), dtype=torch.uint8)
    frames[0] = 0
    frames[1] = 255
    for mode in ("crop", "squash"):
        out = VideoTransform(32, mode, random_crop=True, random_flip=True)(frames)
        assert out.shape == (3, 5, 32, 32) and out.dtype == torch.float32
        assert out.min() >= -0.5 and out.max() <= 0.5
        assert torch.allclose(out[:, 0], torch.tensor(-0.5)) and torch.allclose(out[:, 1], torch.tensor(0.5))
    custom = VideoTransform(32, mean=0.45, std=0.225)(frames)
    assert torch.allclose(custom[:, 1], torch.tensor((1 - 0.45) / 0.225))


def test_centre_crop_keeps_the_middle_and_squash_keeps_everything():
    frames = torch.zeros(1, 40, 120, 3, dtype=torch.uint8)
    frames[:, :, :40] = 255  # left third white
    crop = VideoTransform(40, "crop")(frames)
    squash = VideoTransform(40, "squash")(frames)
    assert crop.max() == -0.5  # the centre 40x40 is all black
    assert squash[..., :10].min() == 0.5 and squash[..., -10:].max() == -0.5


def test_random_crop_moves_and_flip_really_flips():
    frames = torch.arange(40 * 60, dtype=torch.float32).reshape(1, 40, 60, 1).expand(2, 40, 60, 3)
    frames = (frames % 251).to(torch.uint8)
    crop = VideoTransform(40, "crop", random_crop=True)
    boxes = {crop.crop_box(40, 60, torch.Generator().manual_seed(s)) for s in range(20)}
    assert len(boxes) > 3 and all(b[0] == 0 and 0 <= b[1] <= 20 and b[2] == 40 for b in boxes)
    plain = VideoTransform(40, "squash")(frames)
    flipper = VideoTransform(40, "squash", random_flip=True)
    outs = [flipper(frames, torch.Generator().manual_seed(s)) for s in range(10)]
    flipped = [o for o in outs if torch.equal(o, plain.flip(-1))]
    kept = [o for o in outs if torch.equal(o, plain)]
    assert flipped and kept and len(flipped) + len(kept) == 10


def test_dataloader_with_two_workers_and_distributed_sampler(tmp_path):
    cfg = make_set(tmp_path, {f"v{i}.mp4": 20 for i in range(6)}, num_workers=2)
    loader = build_dataloader(cfg, "train", batch_size=4, seed=0)
    batch = next(iter(loader))
    assert batch["video"].shape == (4, 3, 17, 32, 32) and batch["label"].shape == (4,)
    assert len(batch["key"]) == 4
    dataset = pickle.loads(pickle.dumps(loader.dataset))
    sampler = DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=False)
    shard = next(iter(DataLoader(dataset, batch_size=3, sampler=sampler)))
    assert shard["key"] == ["v1", "v3", "v5"]
    # Accelerate's sharding of an ordinary eval loader (as accelerator.prepare does).
    eval_loader = build_dataloader(cfg, "eval", batch_size=2, num_workers=0)
    shards = [[k for b in prepare_data_loader(eval_loader, num_processes=2, process_index=rank,
                                              put_on_device=False) for k in b["key"]] for rank in (0, 1)]
    assert shards[0][:2] == ["v0", "v1"] and shards[1][:2] == ["v2", "v3"]
    assert set(shards[0]) | set(shards[1]) == {f"v{i}" for i in range(6)}


def test_max_eval_clips_takes_an_evenly_spaced_subset_and_bad_rule_fails_early(tmp_path):
    cfg = make_set(tmp_path, {f"v{i}.mp4": 18 for i in range(6)}, max_eval_clips=3)
    assert [e.key for e in VideoDataset(cfg, "eval").entries] == ["v0", "v2", "v5"]
    assert len(VideoDataset(cfg, "train")) == 6
    cfg.short_video = "mirror"
    with pytest.raises(ValueError, match="short_video"):
        VideoDataset(cfg, "train")


def test_missing_or_empty_list_says_what_to_do(tmp_path):
    cfg = make_set(tmp_path, {"a.mp4": 20})
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DatasetError, match="empty.txt is empty: it needs one line per video.*dataset.list_format=folder"):
        VideoDataset(OmegaConf.merge(cfg, {"train_list": str(tmp_path / "empty.txt")}), "train")
    with pytest.raises(DatasetError, match="list file not found: .*nope.txt.*fix dataset.train_list"):
        VideoDataset(OmegaConf.merge(cfg, {"train_list": str(tmp_path / "nope.txt")}), "train")
