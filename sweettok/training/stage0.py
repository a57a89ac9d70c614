"""Stage 0: train the proxy VQ tokenizer from scratch (for users without the published OmniTokenizer file).

    L_G = reconstruction (4·MSE) + perceptual (optional) + commitment (EMA codebook)
          + from ``losses.discriminator_start``: 3-D PatchGAN hinge + feature matching
    L_D = hinge + LeCam, own AdamW and schedule

The export (``<output_dir>/export/model.safetensors`` in our proxy layout) is what stage 1 and 2 load
through ``model.proxy.weights=<output_dir>/export``: ``load_proxy_checkpoint`` reads the folder.
The EMA covers the trainable weights; the codebook's EMA buffers are the live ones.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from sweettok.config import ConfigError, to_dataclass
from sweettok.models.proxy import ProxyTokenizer
from sweettok.models.proxy_convert import load_proxy_checkpoint
from sweettok.training.recon_eval import (
    FVDCache, ReconstructionMetrics, build_eval_loader, build_gan, build_train_loader, fixed_clips, gan_step,
    save_panel,
)
from sweettok.training.task import Task

logger = logging.getLogger(__name__)


class ProxyTask(Task):
    """Trains ``ProxyTokenizer`` with reconstruction, VQ and (delayed) GAN losses."""

    def build(self) -> None:
        cfg = self.cfg
        proxy_cfg = to_dataclass(cfg.model.proxy)
        if cfg.experiment.init_weight:
            raise ConfigError("experiment.init_weight is not used by stage 0 (to fine-tune a proxy, set "
                              f"model.proxy.weights); got {cfg.experiment.init_weight!r}")
        if cfg.model.proxy.weights:  # fine-tune a given proxy instead of starting from scratch
            logger.info("stage 0 starts from the proxy weights %s", cfg.model.proxy.weights)
            model = load_proxy_checkpoint(cfg.model.proxy.weights, proxy_cfg, freeze=False)
            model.train()
        else:
            model = ProxyTokenizer(proxy_cfg)
        logger.info("proxy tokenizer: %s", ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in model.parameter_counts().items()))
        self.models["model"] = model
        self.loss = build_gan(self, model)
        self.train_dataloader = build_train_loader(cfg)
        self.eval_dataloader, eval_set = build_eval_loader(cfg)
        self.logged_clips = fixed_clips(eval_set, cfg.training.num_generate)
        self.fvd = FVDCache(cfg, self.accelerator.device)

    def train_step(self, batch: Any, step: int) -> dict[str, Any]:
        video = batch["video"]
        out = self.models["model"](video)
        logs = gan_step(self, self.loss, video, out["reconstruction"], step, quantizer_loss=out["commitment"])
        codes = out["codes"]
        logs["perplexity"] = out["perplexity"].detach()
        logs["codebook_usage"] = torch.tensor(codes.unique().numel() / self.cfg.model.proxy.codebook_size)
        return logs

    def evaluate(self, step: int) -> dict[str, float]:
        model = self.unwrap("model")
        metrics = ReconstructionMetrics(self.accelerator, self.fvd.get())
        counts = torch.zeros(self.cfg.model.proxy.codebook_size, device=self.accelerator.device)
        for batch in self.eval_dataloader:
            out = model(batch["video"])
            metrics.add_videos(batch["video"], out["reconstruction"])
            counts += torch.bincount(out["codes"].flatten(), minlength=counts.numel()).float()
        result = metrics.compute()
        counts = self.accelerator.reduce(counts, reduction="sum") if self.accelerator.num_processes > 1 else counts
        probs = counts / counts.sum().clamp(min=1)
        result["codebook_usage"] = float((counts > 0).float().mean())
        result["codebook_perplexity"] = float(torch.exp(-(probs * probs.clamp(min=1e-12).log()).sum()))
        return result

    def generate(self, step: int) -> None:
        video = self.logged_clips.to(self.accelerator.device)
        save_panel(self, video, self.unwrap("model")(video)["reconstruction"], step, "proxy_reconstruction")
