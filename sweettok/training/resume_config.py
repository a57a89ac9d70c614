"""What a resumed run may change in its config, compared with the config its checkpoint was saved with.

The checkpoint restores the model weights, the optimizer with its hyper-parameters (AdamW's lr,
betas, weight decay live in its state), the schedule's base lr, and the data position counted in
batches of the old batch size and seed. So changes to the model's architecture, the optimizer,
the schedule, batch size, accumulation, seed, stage, precision or EMA use cannot apply and are
refused; paths, cadence and evaluation settings are taken as they are; the rest (losses, data,
``max_train_steps``, ...) applies from the resumed step on and is listed in a warning.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from sweettok.config import ConfigError
from sweettok.training.logs import flatten

logger = logging.getLogger(__name__)

REFUSED = {
    "model.": "the checkpoint's weights are of the old model",
    "optimizer.": "the optimizer state, with its hyper-parameters, comes from the checkpoint",
    "lr_scheduler.": "the schedule's state comes from the checkpoint",
    "training.per_gpu_batch_size": "the data position is counted in batches",
    "training.gradient_accumulation_steps": "the data position is counted in batches",
    "training.mixed_precision": "the checkpoint holds the old precision's state",
    "training.use_ema": "the EMA weights are in the checkpoint or not",
    "experiment.seed": "the data order follows the seed",
    "experiment.train_stage": "another stage is another model",
}
PATH_SUFFIXES = (".weights", ".prior", ".spatial_pretrain")  # where a file is, not what the model is
SILENT = ("experiment.output_dir", "experiment.resume", "experiment.name", "experiment.project",
          "experiment.logger", "experiment.log_every", "experiment.save_every", "experiment.eval_every",
          "experiment.generate_every", "experiment.log_grad_norm_every", "experiment.keep_last_checkpoints",
          "experiment.init_weight", "dataset.num_workers", "dataset.video_backend", "eval.", "sampling.")


def _why_refused(key: str) -> str | None:
    if key.endswith(PATH_SUFFIXES):
        return None
    return next((why for prefix, why in REFUSED.items() if key == prefix or key.startswith(prefix)), None)


def check_resume_config(saved: dict, cfg: DictConfig, folder: str) -> None:
    """Raise ConfigError listing the changes that cannot apply to ``folder``; warn about the others."""
    old = flatten(saved)
    new = flatten(OmegaConf.to_container(cfg, resolve=True))
    # a key the saved config lacks is a field added to the schema since: its default keeps the old behaviour
    changed = sorted(k for k in old.keys() | new.keys() if k in old and old[k] != new.get(k, "<absent>"))
    refused = [(k, _why_refused(k)) for k in changed if _why_refused(k)]
    if refused:
        listed = "; ".join(f"{k}: {old.get(k, '<absent>')} -> {new.get(k, '<absent>')} ({why})" for k, why in refused)
        raise ConfigError(f"cannot resume from {folder} with this config: {listed}. Undo these changes, or start a "
                          "new run (another experiment.output_dir, or experiment.resume=false, which moves this "
                          "run aside)")
    noted = [k for k in changed if not k.startswith(SILENT) and k not in SILENT]
    if noted:
        logger.warning("resuming from %s with a changed config (applies from here on): %s", folder,
                       "; ".join(f"{k}: {old.get(k, '<absent>')} -> {new.get(k, '<absent>')}" for k in noted))
