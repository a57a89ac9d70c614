"""Checks a run can start, made once before any model is built (``scripts/train.py --check-only``).

The launchers run them in one process before ``accelerate launch``, so a missing file or an empty
dataset is one line, not one traceback per rank; ``scripts/train.py`` runs them again before it
builds the trainer (cheap: file existence, the dataset lists, the MLC priors). Each failure raises
the same error, with the same message, as the stage's ``build`` would after building models.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from omegaconf import DictConfig

from sweettok.config import ConfigError, to_dataclass
from sweettok.data.index_dataset import read_index
from sweettok.data.lists import DatasetError
from sweettok.data.video_dataset import VideoDataset
from sweettok.priors.prior import load_prior
from sweettok.training.registry import TASKS
from sweettok.training.stage1 import check_proxy_weights
from sweettok.training.stage2 import check_stage1_priors

logger = logging.getLogger(__name__)


def check_init_weight(cfg: DictConfig) -> None:
    """``experiment.init_weight``, the stage-1 export stage 2 starts from, is set and exists."""
    path = cfg.experiment.init_weight
    if not path:
        raise ConfigError("experiment.init_weight is empty: stage 2 starts from a stage-1 export folder "
                          "(e.g. outputs/demo/stage1/export, written by `bash run_train_stage1.sh`)")
    if not Path(path).exists():
        raise FileNotFoundError(f"experiment.init_weight: {path} not found (relative to {Path.cwd()}); "
                                "run stage 1 first (`bash run_train_stage1.sh`) or point it at its export folder")


def check_priors(cfg: DictConfig) -> None:
    """The MLC prior files of both quantizers load (plain VQ quantizers need none)."""
    for name in ("spatial_quantizer", "temporal_quantizer"):
        quantizer = cfg.model.tokenizer[name]
        if quantizer.kind == "mlc":
            if not quantizer.prior:
                raise ConfigError(f"model.tokenizer.{name}.prior is empty: an MLC quantizer needs a prior file; "
                                  "build one with `python scripts/build_codebook_priors.py`")
            load_prior(quantizer.prior)


def check_videos(cfg: DictConfig) -> int:
    """Both splits list videos that exist, and the train split fills one batch; returns its clip count."""
    dataset_cfg = to_dataclass(cfg.dataset)
    train = VideoDataset(dataset_cfg, "train")
    VideoDataset(dataset_cfg, "eval", max_clips=cfg.training.eval_num_clips)
    if len(train) < cfg.training.per_gpu_batch_size:
        raise DatasetError(f"the train split has {len(train)} clips, fewer than one batch "
                           f"(training.per_gpu_batch_size={cfg.training.per_gpu_batch_size})")
    logger.info("preflight: %d training clips in %s", len(train), cfg.dataset.root)
    return len(train)


def check_stage0(cfg: DictConfig) -> None:
    """Proxy tokenizer: a proxy to fine-tune, when one is named, exists; the videos."""
    if cfg.model.proxy.weights and not Path(cfg.model.proxy.weights).exists():
        raise FileNotFoundError(f"model.proxy.weights: {cfg.model.proxy.weights} not found (relative to {Path.cwd()}); "
                                "leave it empty to train the proxy from scratch")
    check_videos(cfg)


def check_stage1(cfg: DictConfig) -> None:
    """Stage 1: the proxy, the MLC priors, the optional spatial pre-training file, the videos."""
    check_proxy_weights(cfg)
    check_priors(cfg)
    if cfg.model.spatial_pretrain and not Path(cfg.model.spatial_pretrain).is_file():
        raise FileNotFoundError(f"model.spatial_pretrain: {cfg.model.spatial_pretrain} not found (relative to {Path.cwd()})")
    check_videos(cfg)


def check_stage2(cfg: DictConfig) -> None:
    """Stage 2: the stage-1 export, the proxy (pixel decoder), the MLC priors (the export's), the videos."""
    check_init_weight(cfg)
    check_proxy_weights(cfg)
    check_priors(cfg)
    if Path(cfg.experiment.init_weight).is_dir():
        check_stage1_priors(cfg, Path(cfg.experiment.init_weight))
    check_videos(cfg)


def check_generator(cfg: DictConfig) -> None:
    """Generator: the dumped indices."""
    read_index(cfg.dataset.index_dir)


# the checks of each registered task (sweettok.training.registry.TASKS); another task has none
TASK_CHECKS: dict[str, Callable[[DictConfig], None]] = {
    "sweettok.training.stage0:ProxyTask": check_stage0,
    "sweettok.training.stage1:Stage1Task": check_stage1,
    "sweettok.training.stage2:Stage2Task": check_stage2,
    "sweettok.training.generator_task:GeneratorTask": check_generator,
}


def preflight(cfg: DictConfig) -> None:
    """The checks of the task that trains ``experiment.train_stage``; raises on the first failure."""
    check = TASK_CHECKS.get(TASKS.get(cfg.experiment.train_stage, ""))
    if check is not None:
        check(cfg)
