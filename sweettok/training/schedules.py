"""Learning-rate schedules counted in optimizer steps: linear warmup, then cosine to end_lr (or constant).

The original multiplied warmup and total steps by the number of processes, because accelerate's
scheduler wrapper steps ``num_processes`` times per optimizer step when ``split_batches=False``, and
then mixed units for the discriminator horizon. Here the Accelerator is built with
``step_scheduler_with_optimizer=False`` (see ``accelerator.py``), so the wrapped scheduler steps
exactly once per call, and the trainer calls it once per real optimizer step (after gradient
accumulation): ``warmup_steps`` and ``total_steps`` mean optimizer steps, on any number of processes.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch.optim.lr_scheduler import LambdaLR

from sweettok.config import LrSchedulerConfig

SCHEDULES = ("cosine", "constant")


def lr_at(step: int, base_lr: float, end_lr: float, warmup_steps: int, total_steps: int, name: str = "cosine") -> float:
    """Learning rate of optimizer step ``step`` (0-based): (step+1)/warmup ramp, then cosine or constant."""
    if name not in SCHEDULES:
        raise ValueError(f"lr_scheduler.name must be one of {SCHEDULES}, got '{name}'")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if name == "constant":
        return base_lr
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return end_lr + (base_lr - end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: LrSchedulerConfig,
    total_steps: int,
    warmup_steps: Optional[int] = None,
) -> LambdaLR:
    """LambdaLR following ``lr_at`` for every group (each group keeps its own base lr's ratio).

    ``total_steps`` and ``warmup_steps`` (default ``cfg.warmup_steps``) are in optimizer steps of
    this optimizer: a discriminator that starts at step N passes ``max_train_steps - N``.
    """
    warmup = cfg.warmup_steps if warmup_steps is None else warmup_steps
    base_lr = optimizer.defaults["lr"]
    if base_lr <= 0:
        raise ValueError(f"learning rate must be > 0, got {base_lr}")

    def factor(step: int) -> float:
        return lr_at(step, base_lr, cfg.end_lr, warmup, total_steps, cfg.name) / base_lr

    factor(0)  # fail now on a bad schedule name, not at the first step
    return LambdaLR(optimizer, factor)
