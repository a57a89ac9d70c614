"""Clip dataset over a list of videos, and its DataLoader.

Each item decodes only the frames of one clip (``sampling.plan_clip``), transforms them
(``transforms.VideoTransform``) and returns ``{"video": float (C, T, H, W), "label": int,
"key": str, "unreadable": str, "padded": int}``: ``key`` is the clip actually loaded,
``unreadable`` the newline-joined paths this item passed over ("" when none) and ``padded`` 1 for
a short video, so a consumer can count real distinct clips and bad files across worker processes
(the trainer logs them per epoch). Unreadable videos are skipped: the path is logged once per
process (at debug level inside DataLoader workers, whose summary the consumer reports), counted in
``stats``, and another index is drawn deterministically from the index; only ``max_retries`` unreadable files
for one item (i.e. a dataset that is essentially unreadable) raise. Randomness (clip start, crop, flip)
comes from a ``torch.Generator`` per sample seeded by (seed, epoch, index, candidate), never from a
global or per-worker RNG: an item is the same whichever worker loads it and whenever it is
prefetched, which is what makes a mid-epoch resume exact. The trainer calls ``set_epoch`` (through
Accelerate's ``DataLoaderShard.set_epoch``) before each epoch.
The dataset holds no open files or global state, so it pickles into workers and works with
Accelerate's distributed samplers.
"""

from __future__ import annotations

import logging
import os
import random
from collections import Counter
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import DatasetConfig
from .lists import DatasetError, VideoEntry, class_names_for, find_class_index, load_entries
from .sampling import SHORT_VIDEO_RULES, frame_step, plan_clip
from .transforms import VideoTransform
from .video_reader import VideoReadError, open_video

logger = logging.getLogger(__name__)

TRAIN_SPLITS = ("train",)
EVAL_SPLITS = ("eval", "test", "val")


def _split_sources(cfg: DatasetConfig, split: str) -> tuple[str, str]:
    """(list path, folder name) of a split."""
    if split in TRAIN_SPLITS:
        return cfg.train_list, cfg.train_split
    if split in EVAL_SPLITS:
        return cfg.eval_list, cfg.eval_split
    raise ValueError(f"split must be 'train' or 'eval', got '{split}'")


def _split_class_names(cfg: DatasetConfig, split: str) -> set[str]:
    """Class names of a split: its class folders (folder layout) or the classes its list names."""
    list_path, folder = _split_sources(cfg, split)
    try:
        if cfg.list_format == "folder" or (cfg.list_format == "auto" and not list_path):
            base = os.path.join(cfg.root, folder)  # folder names only: no walk of a large tree
            return {name for name in os.listdir(base) if os.path.isdir(os.path.join(base, name))}
        return {entry.class_name for entry in load_entries(list_path, cfg.root, cfg.list_format, folder)[0]}
    except (DatasetError, OSError):
        return set()  # a missing other split only narrows the label map to this split's classes


def _evenly_spaced(entries: list[VideoEntry], count: int) -> list[VideoEntry]:
    """A deterministic subset that keeps every part of the (class-sorted) list represented."""
    if count <= 0 or count >= len(entries):
        return entries
    picks = np.linspace(0, len(entries) - 1, count).round().astype(int)
    return [entries[i] for i in picks]


class VideoDataset(Dataset):
    """Videos of one split as fixed-length normalised clips."""

    def __init__(self, cfg: DatasetConfig, split: str = "train", max_clips: Optional[int] = None, seed: int = 0):
        self.cfg = cfg
        self.split = split
        self.train = split in TRAIN_SPLITS
        self.seed = seed
        self.epoch = 0
        if cfg.short_video not in SHORT_VIDEO_RULES:  # checked here so a typo is not taken for bad files
            raise ValueError(f"dataset.short_video must be one of {SHORT_VIDEO_RULES}, got '{cfg.short_video}'")
        list_path, folder = _split_sources(cfg, split)
        entries, self.list_format = load_entries(list_path, cfg.root, cfg.list_format, folder)
        if not entries:
            raise DatasetError(f"dataset split '{split}' is empty (root={cfg.root}, list='{list_path}')")
        class_index = find_class_index(list_path, cfg.root) if self.list_format == "ucf" else None
        names = {e.class_name for e in entries} | _split_class_names(cfg, "train") | _split_class_names(cfg, "eval")
        self.class_names = class_names_for(names, class_index)
        self._label = {name: i for i, name in enumerate(self.class_names)}
        unknown = sorted({e.class_name for e in entries} - self._label.keys())
        if unknown:
            raise DatasetError(f"classes {unknown[:5]} of split '{split}' are not in the class index")
        if max_clips is None:
            max_clips = 0 if self.train else cfg.max_eval_clips
        self.entries = _evenly_spaced(entries, max_clips)
        self.transform = VideoTransform(
            cfg.resolution, cfg.resize_mode,
            random_crop=self.train and cfg.random_crop, random_flip=self.train and cfg.random_flip,
            mean=cfg.mean, std=cfg.std,
        )
        self.stats: Counter = Counter()  # per process: loaded / padded / skipped
        self._reported: set[str] = set()
        self._check_root()

    def _check_root(self) -> None:
        """Fail early with one clear message when no file of the list exists (wrong root)."""
        sample = self.entries[:: max(1, len(self.entries) // 8)][:8]
        if not any(os.path.isfile(self.path_of(e)) for e in sample):
            raise DatasetError(
                f"none of {len(sample)} sampled videos of split '{self.split}' exist, e.g. "
                f"{self.path_of(sample[0])}; check dataset.root ({self.cfg.root})"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes (shared by train and eval)."""
        return len(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the random draws of every item depend on."""
        self.epoch = epoch

    def sample_generator(self, index: int, candidate: int) -> torch.Generator:
        """The generator of item ``index`` when it loads video ``candidate`` (a pure function of seed/epoch)."""
        state = np.random.SeedSequence([self.seed, self.epoch, index, candidate]).generate_state(1, np.uint64)
        return torch.Generator().manual_seed(int(state[0]) & (2**63 - 1))

    def path_of(self, entry: VideoEntry) -> str:
        """Full path of an entry."""
        return os.path.join(self.cfg.root, entry.path)

    def __len__(self) -> int:
        return len(self.entries)

    def load_clip(self, entry: VideoEntry, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Decode and transform one clip of ``entry`` -> (C, T, H, W); raises VideoReadError.

        Random draws (start, crop, flip) come from ``generator`` (a fresh seed-0 one when None).
        """
        cfg = self.cfg
        path = self.path_of(entry)
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        with open_video(path, cfg.video_backend) as reader:
            step = frame_step(reader.fps, cfg.frame_stride, cfg.target_fps)
            rng = random.Random(int(torch.randint(0, 2**31 - 1, (), generator=generator))) if self.train else None
            plan = plan_clip(reader.num_frames, cfg.num_frames, step, self.train, cfg.short_video, rng)
            frames = torch.from_numpy(reader.get_frames(plan.indices))  # (T, H, W, 3) uint8
        if plan.padded:
            self.stats["padded"] += 1
            if plan.pad_rule == "zero":
                frames[plan.num_valid :] = 0
        return self.transform(frames, generator=generator)

    def _report(self, path: str, err: Exception) -> None:
        self._reported.add(path)
        self.stats["unreadable_files"] = len(self._reported)
        in_worker = torch.utils.data.get_worker_info() is not None  # each worker would warn again every epoch
        logger.log(logging.DEBUG if in_worker else logging.WARNING,
                   "skipping unreadable video %s (%s); %d unreadable so far in this process",
                   path, getattr(err, "reason", err), len(self._reported))

    def __getitem__(self, index: int) -> dict[str, Any]:
        # Substitutes for an unreadable video follow a fixed sequence seeded by ``index`` (never
        # ``index`` itself); files already known to be unreadable are passed over without a retry,
        # which does not change the outcome because they would fail again.
        retries = max(1, self.cfg.max_retries)
        rng = random.Random(index)
        candidate, failures, last_error, passed_over = index, 0, None, []
        for _ in range(retries * 20):
            entry = self.entries[candidate]
            path = self.path_of(entry)
            if path in self._reported:
                self.stats["skipped"] += 1
                passed_over.append(path)
            else:
                padded = self.stats["padded"]
                try:
                    video = self.load_clip(entry, self.sample_generator(index, candidate))
                except (VideoReadError, IndexError, ValueError) as err:  # ValueError: e.g. frame size changes mid-file
                    self.stats["skipped"] += 1
                    self._report(path, err)
                    passed_over.append(path)
                    failures, last_error = failures + 1, err
                    if failures >= retries:
                        break
                else:
                    self.stats["loaded"] += 1
                    return {"video": video, "label": self._label[entry.class_name], "key": entry.key,
                            "unreadable": "\n".join(passed_over), "padded": int(self.stats["padded"] > padded)}
            if len(self.entries) > 1:
                candidate = (index + rng.randrange(1, len(self.entries))) % len(self.entries)
        raise DatasetError(
            f"no readable video found for index {index} of split '{self.split}' after {failures} failures "
            f"({len(self._reported)} unreadable files; last: {last_error}); the dataset looks unreadable "
            f"(root={self.cfg.root})"
        )


def build_dataloader(
    cfg: DatasetConfig,
    split: str,
    batch_size: int,
    shuffle: Optional[bool] = None,
    num_workers: Optional[int] = None,
    drop_last: Optional[bool] = None,
    max_clips: Optional[int] = None,
    seed: Optional[int] = None,
) -> DataLoader:
    """DataLoader over ``VideoDataset``: shuffled with drop_last for train, ordered for eval."""
    dataset = VideoDataset(cfg, split, max_clips=max_clips)
    train = dataset.train
    workers = cfg.num_workers if num_workers is None else num_workers
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train if shuffle is None else shuffle,
        drop_last=train if drop_last is None else drop_last,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
        generator=generator,
    )
