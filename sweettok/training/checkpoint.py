"""Run-folder checkpoints (atomic, resumable) and the final export the next stage loads.

    output_dir/
      config.yaml                 resolved config of the run
      checkpoint-<step>/          accelerate save_state (models as safetensors, optimizers,
                                  schedulers, scaler, RNG of every rank), ema.safetensors,
                                  task_state.safetensors (loss-side buffers such as LeCam's EMAs),
                                  config.yaml, meta.json (written last)
      checkpoint-<step>-nonfinite/  state when a loss went NaN/inf (never resumed from)
      export/model.safetensors + config.yaml (+ priors/, export.json)   EMA weights of the main model

A checkpoint is written into ``.tmp-checkpoint-<step>/`` and renamed with ``os.replace`` once
complete, so a kill mid-save leaves every earlier checkpoint intact; resume only considers folders
named exactly ``checkpoint-<step>`` that hold a ``meta.json``.

No code runs on resume: every file is safetensors, JSON/YAML, or a torch pickle that Accelerate
reads with ``weights_only=True`` (optimizers, schedulers, RNG; the RNG file is checked here first,
because Accelerate silently skips an RNG file it cannot read). Nothing goes through
``register_for_checkpointing`` (Accelerate reads those ``custom_checkpoint_*.pkl`` with
``weights_only=False``); a checkpoint holding one is refused. A checkpoint that cannot be read
raises ``CheckpointError`` naming the folder and the file. Files get the umask's permissions
(safetensors writes ``-rw-------``), so teammates on a shared filesystem can read them.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
import time
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf
from accelerate.utils import load as safe_torch_load
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from sweettok.config import load_config, save_config
from sweettok.errors import first_line
from sweettok.permissions import make_shareable

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
META_FILE = "meta.json"
EMA_FILE = "ema.safetensors"
CONFIG_FILE = "config.yaml"
EXPORT_WEIGHTS = "model.safetensors"
TASK_STATE_FILE = "task_state.safetensors"
RNG_FILE_GLOB = "random_states_*.pkl"
CUSTOM_PICKLE_GLOB = "custom_checkpoint_*.pkl"


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be read (damaged, truncated, or holding a refused pickle)."""


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


def read_checkpoint_meta(folder: str | os.PathLike) -> dict:
    """``read_meta``, with CheckpointError naming the file when it is unreadable."""
    try:
        return read_meta(folder)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{Path(folder) / META_FILE} is damaged ({str(err).splitlines()[0]})") from None


def save_checkpoint(
    accelerator,
    folder: str | os.PathLike,
    meta: dict,
    cfg: DictConfig,
    ema=None,
    modules: Optional[dict[str, nn.Module]] = None,
) -> Path:
    """Write a checkpoint atomically; every rank must call it (save_state is collective).

    Other stateful objects a task owns go in through ``modules`` (their state dicts, tensors only,
    into ``task_state.safetensors``), never through ``accelerator.register_for_checkpointing``.
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
        if modules:
            state = {f"{name}.{k}": v.detach().cpu().contiguous() for name, module in modules.items()
                     for k, v in module.state_dict().items()}
            save_file(state, str(tmp / TASK_STATE_FILE))
        save_config(cfg, tmp / CONFIG_FILE)
        meta = {**meta, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "config": OmegaConf.to_container(cfg, resolve=True)}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        make_shareable(tmp)
        if folder.exists():  # the same step saved again (e.g. after a resume): replace it
            old = folder.parent / f".old-{folder.name}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, folder)
        logger.info("saved %s", folder)
    accelerator.wait_for_everyone()
    return folder


def _check_pickles(accelerator, folder: Path) -> None:
    """Refuse what Accelerate would read unsafely or skip silently, before it reads anything."""
    if getattr(accelerator, "_custom_objects", None):
        raise CheckpointError("objects were registered with accelerator.register_for_checkpointing, which "
                              "Accelerate restores with weights_only=False; pass them as task.checkpoint_modules")
    planted = sorted(folder.glob(CUSTOM_PICKLE_GLOB))
    if planted:
        raise CheckpointError(f"{planted[0]}: refused (Accelerate would unpickle it with weights_only=False, and this "
                              "project never writes one: it may have been planted); delete it to resume from here")
    rng_file = folder / RNG_FILE_GLOB.replace("*", str(accelerator.process_index))
    _probe(rng_file)


def _probe(path: Path) -> None:
    """Read one checkpoint file safely; CheckpointError naming it when it is missing, damaged or refused."""
    try:
        if path.suffix == ".safetensors":
            load_file(str(path))
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix in (".bin", ".pkl"):
            safe_torch_load(str(path), map_location="cpu")  # weights_only=True, numpy RNG arrays allowed
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except pickle.UnpicklingError as err:
        first = first_line(err)
        raise CheckpointError(f"{path}: refused to unpickle with weights_only=True (it names code to run, "
                              f"which a checkpoint of this project never holds): {first}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError, EOFError) as err:
        first = first_line(err)
        raise CheckpointError(f"{path} is damaged ({type(err).__name__}: {first})") from None


def _find_bad_file(folder: Path) -> None:
    """Raise CheckpointError for the first unreadable file of ``folder`` (after a failed load)."""
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("custom_checkpoint_"):
            _probe(path)


def load_checkpoint(accelerator, folder: str | os.PathLike, ema=None,
                    modules: Optional[dict[str, nn.Module]] = None) -> dict:
    """Restore models, optimizers, schedulers, scaler, RNG, EMA and ``modules`` from ``folder``; return its meta.

    Raises CheckpointError naming the folder and the file when any of it cannot be read.
    """
    folder = Path(folder)
    meta = read_checkpoint_meta(folder)
    _check_pickles(accelerator, folder)
    try:
        accelerator.load_state(str(folder))
        if ema is not None:
            ema.load(folder / EMA_FILE)
        if modules:
            state = load_file(str(folder / TASK_STATE_FILE))
            for name, module in modules.items():
                prefix = f"{name}."
                module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure inside a load: find and name the file
        _find_bad_file(folder)
        first = first_line(err)
        raise CheckpointError(f"{folder} could not be loaded into this run ({type(err).__name__}: {first})") from err
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

