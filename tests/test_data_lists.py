"""List parsing (original tsv, official UCF-101, folder walk) and datasets built from each."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from sweettok.config import DatasetConfig
from sweettok.data.lists import (
    DatasetError,
    detect_list_format,
    load_entries,
    parse_tsv_lines,
    parse_ucf_lines,
    walk_folder,
)
from sweettok.data.video_dataset import VideoDataset
from sweettok.data.video_writer import write_video

# Real lines of data_files/ucf101_trainlist01.txt / ucf101_testlist01.txt (the original format).
TRAIN_LINES = [
    "UCF-101/videos_split/train/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi\t1",
    "UCF-101/videos_split/train/HammerThrow/v_HammerThrow_g10_c07.avi\t36",
    "UCF-101/videos_split/train/Hammering/v_Hammering_g14_c01.avi\t35",
    "UCF-101/videos_split/train/YoYo/v_YoYo_g09_c03.avi\t101",
]
TEST_LINES = [
    "UCF-101/videos_split/test/HammerThrow/v_HammerThrow_g01_c01.avi\t36",
    "UCF-101/videos_split/test/YoYo/v_YoYo_g01_c01.avi\t101",
]
# The same videos in the official UCF-101 split format, and part of its classInd.txt.
UCF_TRAIN = ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1", "HammerThrow/v_HammerThrow_g10_c07.avi 36",
             "Hammering/v_Hammering_g14_c01.avi 35", "YoYo/v_YoYo_g09_c03.avi 101"]
UCF_TEST = ["HammerThrow/v_HammerThrow_g01_c01.avi", "YoYo/v_YoYo_g01_c01.avi"]
CLASS_IND = ["1 ApplyEyeMakeup", "2 Hammering", "3 HammerThrow", "4 YoYo"]


def tiny_video(path, num_frames=20, size=24, seed=0):
    frames = np.random.default_rng(seed).integers(0, 256, (1, size, size, 3), dtype=np.uint8).repeat(num_frames, 0)
    return write_video(path, frames, fps=10)


def dataset_cfg(**fields) -> DatasetConfig:
    base = OmegaConf.structured(DatasetConfig(num_frames=4, resolution=16, num_workers=0))
    return OmegaConf.merge(base, fields)


def test_original_tsv_format_labels_from_sorted_folder_names():
    assert detect_list_format(TRAIN_LINES) == "tsv"
    entries = parse_tsv_lines(TRAIN_LINES)
    assert [e.class_name for e in entries] == ["ApplyEyeMakeup", "HammerThrow", "Hammering", "YoYo"]
    assert [e.list_id for e in entries] == [1, 36, 35, 101]
    assert entries[0].key == "v_ApplyEyeMakeup_g08_c01"
    assert entries[1].path == "UCF-101/videos_split/train/HammerThrow/v_HammerThrow_g10_c07.avi"


def test_tsv_with_two_ids_for_one_class_is_rejected():
    bad = TRAIN_LINES[:2] + ["UCF-101/videos_split/train/HammerThrow/v_HammerThrow_g11_c01.avi\t7"]
    with pytest.raises(DatasetError, match="HammerThrow"):
        parse_tsv_lines(bad, "ucf_train.txt")


def test_official_ucf_format_with_and_without_labels():
    assert detect_list_format(UCF_TRAIN) == "ucf" and detect_list_format(UCF_TEST) == "ucf"
    train, test = parse_ucf_lines(UCF_TRAIN), parse_ucf_lines(UCF_TEST)
    assert [e.list_id for e in train] == [1, 36, 35, 101]
    assert [e.list_id for e in test] == [None, None]
    assert [e.class_name for e in test] == ["HammerThrow", "YoYo"]


def test_folder_walk_sorted_and_video_files_only(tmp_path):
    for relative in ["train/b_class/x.mp4", "train/a class/y.avi", "train/a class/z.webm", "train/a class/notes.json"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"0")
    entries = walk_folder(str(tmp_path), "train")
    assert [e.path for e in entries] == ["train/a class/y.avi", "train/a class/z.webm", "train/b_class/x.mp4"]
    with pytest.raises(DatasetError, match="does not exist"):
        walk_folder(str(tmp_path), "test")


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _make_videos(root, paths):
    for seed, relative in enumerate(paths):
        tiny_video(root / relative, seed=seed)


def test_dataset_from_original_lists(tmp_path):
    _make_videos(tmp_path, [line.split("\t")[0] for line in TRAIN_LINES + TEST_LINES])
    lists = tmp_path / "data_files"
    lists.mkdir()
    cfg = dataset_cfg(root=str(tmp_path), train_list=_write_lines(lists / "train.txt", TRAIN_LINES),
                      eval_list="data_files/test.txt")  # relative to root works too
    _write_lines(lists / "test.txt", TEST_LINES)
    train, test = VideoDataset(cfg, "train"), VideoDataset(cfg, "eval")
    assert train.list_format == "tsv"
    # Sorted (case-sensitive) names, as the original: HammerThrow before Hammering.
    assert train.class_names == test.class_names == ["ApplyEyeMakeup", "HammerThrow", "Hammering", "YoYo"]
    assert [train[i]["label"] for i in range(4)] == [0, 1, 2, 3]
    item = test[0]
    assert item["label"] == 1 and item["key"] == "v_HammerThrow_g01_c01"
    assert item["video"].shape == (3, 4, 16, 16)


def test_dataset_from_official_ucf_lists_uses_class_ind(tmp_path):
    root = tmp_path / "UCF-101"
    _make_videos(root, [line.split()[0] for line in UCF_TRAIN + UCF_TEST])
    splits = tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    cfg = dataset_cfg(root=str(root), train_list=_write_lines(splits / "trainlist01.txt", UCF_TRAIN),
                      eval_list=_write_lines(splits / "testlist01.txt", UCF_TEST))
    no_index = VideoDataset(cfg, "eval")
    assert no_index.list_format == "ucf"
    assert no_index.class_names == ["ApplyEyeMakeup", "HammerThrow", "Hammering", "YoYo"]
    _write_lines(splits / "classInd.txt", CLASS_IND)
    test = VideoDataset(cfg, "eval")
    assert test.class_names == ["ApplyEyeMakeup", "Hammering", "HammerThrow", "YoYo"]
    assert [test[i]["label"] for i in range(2)] == [2, 3]


def test_dataset_from_folder_walk_kinetics_style(tmp_path):
    _make_videos(tmp_path, ["train/riding a bike/a.mp4", "train/abseiling/b.mp4", "test/abseiling/c.mkv"])
    (tmp_path / "test" / "zumba").mkdir()  # a class with no test videos still gets its label
    cfg = dataset_cfg(root=str(tmp_path), train_split="train", eval_split="test")
    train, test = VideoDataset(cfg, "train"), VideoDataset(cfg, "eval")
    assert train.list_format == "folder"
    assert train.class_names == test.class_names == ["abseiling", "riding a bike", "zumba"]
    assert [train[0]["label"], train[1]["label"], test[0]["label"]] == [0, 1, 0]


def test_missing_list_and_wrong_root_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="list file not found: nope.txt"):
        load_entries("nope.txt", str(tmp_path), "auto", "train")
    lst = _write_lines(tmp_path / "train.txt", TRAIN_LINES)
    with pytest.raises(DatasetError, match="check dataset.root"):
        VideoDataset(dataset_cfg(root=str(tmp_path / "elsewhere"), train_list=lst), "train")
    with pytest.raises(DatasetError, match="list_format"):
        load_entries(lst, str(tmp_path), "csv", "train")
