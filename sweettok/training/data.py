"""Training dataloaders whose order is a pure function of (seed, epoch), for exact resume.

The sampler reshuffles each epoch with its own generator seeded by ``seed`` and the epoch, and the
DataLoader gets its own generator too, so iterating never draws from the global torch RNG: a run
resumed mid-epoch (``accelerator.skip_first_batches``) sees the same batches, and its model-side
randomness (dropout, noise) continues exactly where the checkpoint's RNG state left it.
Random augmentations are only reproducible if the dataset derives them from the sample index and
epoch (``VideoDataset`` does, from a generator per sample; Accelerate's ``set_epoch`` reaches the
dataset), never from the global or a per-worker RNG: the loader prefetches the next batch before it
yields this one, so a checkpoint's RNG state would otherwise already be past the next batch's draws.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochShuffleSampler(Sampler[int]):
    """Permutation of ``range(num_samples)`` seeded by (seed, epoch); ``set_epoch`` before each epoch."""

    def __init__(self, num_samples: int, seed: int = 0, shuffle: bool = True):
        if num_samples <= 0:
            raise ValueError(f"the dataset is empty (num_samples={num_samples})")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order ``__iter__`` yields."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.num_samples))
        rng = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=rng).tolist())

    def __len__(self) -> int:
        return self.num_samples


class DataReport:
    """Counts of the clips a rank trained on that replaced unreadable files or were padded, per epoch and run.

    Fed with the batches themselves (``VideoDataset`` items carry ``unreadable`` and ``padded``), so
    it sees what every DataLoader worker met; ``summary`` totals all ranks (a collective call).
    """

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.files: set[str] = set()
        self.run_counts: Counter = Counter()
        self.run_files: set[str] = set()

    def add(self, batch: Any) -> None:
        """Count one batch (batches without the fields are ignored)."""
        if not isinstance(batch, dict) or "unreadable" not in batch:
            return
        passed_over = list(batch["unreadable"])
        self.counts["clips"] += len(passed_over)
        self.counts["replaced"] += sum(1 for paths in passed_over if paths)
        self.files.update(path for paths in passed_over for path in paths.split("\n") if path)
        if "padded" in batch:
            self.counts["padded"] += int(torch.as_tensor(batch["padded"]).sum())

    def summary(self, accelerator, what: str) -> Optional[tuple[str, bool]]:
        """(line, any bad file) for ``what`` (e.g. "epoch 3") over all ranks, then reset; None if nothing counted."""
        from accelerate.utils import gather_object

        parts = gather_object([(dict(self.counts), sorted(self.files))])
        counts, files = Counter(), set()
        for part_counts, part_files in parts:
            counts.update(part_counts)
            files.update(part_files)
        self.run_counts.update(self.counts)
        self.run_files.update(self.files)
        self.counts, self.files = Counter(), set()
        if not counts["clips"]:
            return None
        listed = ", ".join(sorted(files)[:10]) + (" ..." if len(files) > 10 else "")
        line = (f"{what}: {counts['clips']} clips, {counts['replaced']} replaced for {len(files)} unreadable "
                f"file(s){': ' + listed if files else ''}; {counts['padded']} short video(s) padded")
        return line, bool(files)

    def run_summary(self, accelerator) -> Optional[tuple[str, bool]]:
        """The same line over the whole run so far (all ranks)."""
        self.counts, self.files = self.run_counts, self.run_files
        self.run_counts, self.run_files = Counter(), set()
        return self.summary(accelerator, "data of this run")


def _seed_worker(worker_id: int) -> None:
    # torch seeds python's `random` and itself per worker; numpy needs it done by hand
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_dataloader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_workers: int = 0,
    drop_last: bool = True,
    collate_fn: Optional[Callable] = None,
) -> DataLoader:
    """Per-process DataLoader for the trainer (``accelerator.prepare`` shards it across ranks)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(dataset), seed=seed, shuffle=shuffle),
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate_fn,
        worker_init_fn=_seed_worker if num_workers > 0 else None,
        persistent_workers=False,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=torch.cuda.is_available(),
    )
