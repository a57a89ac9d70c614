"""Config -> ``accelerate.Accelerator`` (precision, accumulation, tracker, run folder)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration
from omegaconf import DictConfig

from sweettok.config import ConfigError
from sweettok.training.logs import resolve_wandb_mode

PRECISIONS = ("no", "fp16", "bf16")
TRACKERS = ("wandb", "tensorboard", "none")


def build_accelerator(cfg: DictConfig) -> Accelerator:
    """Accelerator for ``cfg``; schedulers step once per call (we call them once per optimizer step)."""
    exp, training = cfg.experiment, cfg.training
    # YAML 1.1 reads a bare `no` (file or `training.mixed_precision=no`) as false -> "False".
    precision = "no" if str(training.mixed_precision).lower() == "false" else training.mixed_precision
    if precision not in PRECISIONS:
        raise ConfigError(f"training.mixed_precision must be one of {PRECISIONS}, got '{precision}'")
    if exp.logger not in TRACKERS:
        raise ConfigError(f"experiment.logger must be one of {TRACKERS}, got '{exp.logger}'")
    if training.gradient_accumulation_steps < 1:
        raise ConfigError(f"training.gradient_accumulation_steps must be >= 1, got {training.gradient_accumulation_steps}")
    if exp.logger == "wandb":
        resolve_wandb_mode()  # the user's WANDB_MODE; unset: online when logged in, else offline
    if exp.logger == "tensorboard" and not any(
        importlib.util.find_spec(name) for name in ("tensorboard", "tensorboardX")
    ):
        raise ConfigError("experiment.logger=tensorboard needs `pip install tensorboard` (or use wandb / none)")
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out = Path(exp.output_dir)
    # Launched as several processes on a machine without CUDA (`accelerate launch --multi_gpu` or
    # torchrun on CPU): without cpu=True each process would silently train alone.
    multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    return Accelerator(
        cpu=multi_cpu,
        mixed_precision=precision,
        gradient_accumulation_steps=training.gradient_accumulation_steps,
        log_with=None if exp.logger == "none" else exp.logger,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        # The wrapper would otherwise step num_processes times per optimizer step (see schedules.py).
        step_scheduler_with_optimizer=False,
    )
