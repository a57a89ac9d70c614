"""Run-folder checkpoints (atomic, resumable) and the final export the next stage loads.

    output_dir/
      config.yaml                 resolved config of the run
      checkpoint-<step>/          accelerate save_state (models as safetensors, optimizers,
                                  schedulers, scaler, RNG of every rank), ema.safetensors,
                                  config.yaml, meta.json (written last)
      checkpoint-<step>-nonfinite/  state when a loss went NaN/inf (never resumed from)
      export/model.safetensors + config.yaml (+ priors/, export.json)   EMA weights of the main model

A checkpoint is written into ``.tmp-checkpoint-<step>/`` and renamed with ``os.replace`` once
complete, so a kill mid-save leaves every earlier checkpoint intact; resume only considers folders
named exactly ``checkpoint-<step>`` that hold a ``meta.json``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file

from sweettok.config import load_config, save_config

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
META_FILE = "meta.json"
EMA_FILE = "ema.safetensors"
CONFIG_FILE = "config.yaml"
EXPORT_WEIGHTS = "model.safetensors"


def list_checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run as (step, folder), oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = []
    for path in output_dir.iterdir():
        match = CHECKPOINT_RE.match(path.name)
        if match and (path / META_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(output_dir: str | os.PathLike) -> Optional[Path]:
    """Newest complete checkpoint folder, or None."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def prune_checkpoints(output_dir: str | os.PathLike, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` complete checkpoints (0 keeps all)."""
    if keep_last <= 0:
        return
    for _, path in list_checkpoints(output_dir)[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)
        logger.info("removed old checkpoint %s", path)


def read_meta(folder: str | os.PathLike) -> dict:
    """The ``meta.json`` of a checkpoint folder."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no meta.json, not a complete checkpoint")
    return json.loads(path.read_text())


def save_checkpoint(
    accelerator,
    folder: str | os.PathLike,
    meta: dict,
    cfg: DictConfig,
    ema=None,
) -> Path:
    """Write a checkpoint atomically; every rank must call it (save_state is collective).

    Other stateful objects a task owns go in through ``accelerator.register_for_checkpointing``.
    """
    folder = Path(folder)
    tmp = folder.parent / f".tmp-{folder.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # a leftover of an interrupted save
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    if accelerator.is_main_process:
        if ema is not None:
            ema.save(tmp / EMA_FILE)
        save_config(cfg, tmp / CONFIG_FILE)
        meta = {**meta, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "config": OmegaConf.to_container(cfg, resolve=True)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        if folder.exists():  # the same step saved again (e.g. after a resume): replace it
            old = folder.parent / f".old-{folder.name}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, folder)
        logger.info("saved %s", folder)
    accelerator.wait_for_everyone()
    return folder


def load_checkpoint(accelerator, folder: str | os.PathLike, ema=None) -> dict:
    """Restore models, optimizers, schedulers, scaler, RNG (and EMA) from ``folder``; return its meta."""
    folder = Path(folder)
    meta = read_meta(folder)
    accelerator.load_state(str(folder))
    if ema is not None:
        ema.load(folder / EMA_FILE)
    return meta


def export_model(state_dict: dict[str, torch.Tensor], cfg: DictConfig, out_dir: str | os.PathLike) -> Path:
    """Write a self-contained export (``sweettok.models.pretrained.save_pretrained``); main process only."""
    from sweettok.models.pretrained import save_pretrained

    return save_pretrained(state_dict, cfg, out_dir)


def load_export(folder: str | os.PathLike) -> tuple[dict[str, torch.Tensor], DictConfig]:
    """Read an export folder (``model.safetensors`` + ``config.yaml``) -> (state_dict, config)."""
    folder = Path(folder)
    weights, config = folder / EXPORT_WEIGHTS, folder / CONFIG_FILE
    for path in (weights, config):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: an export folder holds {EXPORT_WEIGHTS} and {CONFIG_FILE}, "
                "written at the end of a training run into <output_dir>/export"
            )
    return load_file(str(weights)), load_config(config)

