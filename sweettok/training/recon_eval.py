"""Pieces the reconstruction stages (0, 1, 2) share: data, the validation subset, metrics, panels, the GAN.

In-training evaluation runs on a fixed, evenly spaced subset of the eval split
(``training.eval_num_clips`` clips, the same every time), sharded over ranks by the prepared eval
loader; per-clip PSNR/SSIM and I3D features are gathered with ``gather_for_metrics`` (so the
padding of an uneven last batch is dropped) and averaged on every rank, which fixes the original's
per-rank FVD. The I3D network is loaded once per run, not at every evaluation.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
from einops import rearrange
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from sweettok.config import to_dataclass
from sweettok.data.video_dataset import VideoDataset
from sweettok.eval.fvd import build_fvd_extractor, frechet_distance
from sweettok.eval.metrics import psnr_per_frame, ssim_per_frame
from sweettok.losses.reconstruction import ReconstructionGANLoss
from sweettok.models.discriminator import NLayerDiscriminator3D
from sweettok.training.data import build_dataloader
from sweettok.training.media import save_video_panel
from sweettok.training.optim import build_optimizer
from sweettok.training.schedules import build_scheduler

logger = logging.getLogger(__name__)


def build_train_loader(cfg: DictConfig) -> DataLoader:
    """Training clips of ``cfg.dataset`` in an order that exact resume can replay."""
    dataset = VideoDataset(to_dataclass(cfg.dataset), "train", seed=cfg.experiment.seed)  # per-sample draws
    return build_dataloader(dataset, cfg.training.per_gpu_batch_size, seed=cfg.experiment.seed,
                            num_workers=cfg.dataset.num_workers)


def build_eval_loader(cfg: DictConfig) -> tuple[DataLoader, VideoDataset]:
    """Ordered loader over the fixed validation subset, and its dataset (for the logged clips)."""
    dataset = VideoDataset(to_dataclass(cfg.dataset), "eval", max_clips=cfg.training.eval_num_clips)
    loader = DataLoader(dataset, batch_size=cfg.eval.batch_size, shuffle=False, drop_last=False,
                        num_workers=cfg.dataset.num_workers)
    return loader, dataset


def fixed_clips(dataset: VideoDataset, count: int) -> torch.Tensor:
    """The first ``count`` clips of the (ordered) validation subset, stacked (B, C, T, H, W)."""
    count = max(1, min(count, len(dataset)))
    return torch.stack([dataset[i]["video"] for i in range(count)])


def to_unit(video: torch.Tensor) -> torch.Tensor:
    """[-0.5, 0.5] clips -> [0, 1], clamped (what a viewer sees; PSNR/SSIM/FVD inputs)."""
    return (video.float() + 0.5).clamp(0.0, 1.0)


class ReconstructionMetrics:
    """Accumulates per-clip PSNR/SSIM (and I3D features) over an eval pass; ``compute`` averages."""

    def __init__(self, accelerator, fvd_extractor=None, with_ssim: bool = True):
        self.accelerator = accelerator
        self.fvd_extractor = fvd_extractor
        self.with_ssim = with_ssim
        self.values: dict[str, list[torch.Tensor]] = {}
        self.features: dict[str, list[torch.Tensor]] = {"real": [], "fake": []}

    def add(self, name: str, per_clip: torch.Tensor) -> None:
        """Per-clip values (B,) of metric ``name`` (gathered across ranks here)."""
        gathered = self.accelerator.gather_for_metrics(per_clip.detach().float().to(self.accelerator.device))
        self.values.setdefault(name, []).append(gathered.cpu())

    def add_videos(self, inputs: torch.Tensor, outputs: torch.Tensor, prefix: str = "") -> None:
        """PSNR (and SSIM) of ``outputs`` against ``inputs`` ([-0.5, 0.5] clips), per clip."""
        x, y = to_unit(inputs), to_unit(outputs)
        frames = x.shape[2]
        self.add(f"{prefix}psnr", rearrange(psnr_per_frame(y, x).clamp(max=100.0), "(b t) -> b t", t=frames).mean(1))
        if self.with_ssim:
            self.add(f"{prefix}ssim", rearrange(ssim_per_frame(y, x), "(b t) -> b t", t=frames).mean(1))
        if self.fvd_extractor is not None and not prefix:
            for key, video in (("real", x), ("fake", y)):
                feats = self.fvd_extractor.features(video).to(self.accelerator.device)
                self.features[key].append(self.accelerator.gather_for_metrics(feats).cpu())

    def compute(self) -> dict[str, float]:
        """Mean of every metric over all clips of all ranks (+ ``fvd`` when features were taken)."""
        out = {name: float(torch.cat(chunks).mean()) for name, chunks in self.values.items()}
        if self.features["real"]:
            out["fvd"] = frechet_distance(torch.cat(self.features["real"]), torch.cat(self.features["fake"]))
        return out


class FVDCache:
    """The I3D feature extractor, built once on first use (only when ``training.eval_fvd``)."""

    def __init__(self, cfg: DictConfig, device: torch.device):
        self.cfg, self.device = cfg, device
        self._extractor = None

    def get(self):
        """The extractor, or None when rFVD is off."""
        if not self.cfg.training.eval_fvd:
            return None
        if self._extractor is None:
            self._extractor = build_fvd_extractor(to_dataclass(self.cfg.eval), self.device)
        return self._extractor


def save_panel(task, inputs: torch.Tensor, outputs: torch.Tensor, step: int, tag: str) -> None:
    """input | output | |difference| of the logged clips, written by the main process."""
    if task.accelerator.is_main_process:
        save_video_panel(inputs, outputs.clamp(-0.5, 0.5), task.output_dir, step, tag=tag,
                         accelerator=task.accelerator)


# ----------------------------------------------------------------------------- GAN (stages 0 and 2)


def build_gan(task, generator: nn.Module) -> ReconstructionGANLoss:
    """Discriminator, its optimizer/schedule, the generator's optimizer/schedule and the loss module.

    Fills ``task.models['discriminator']``, ``task.optimizers`` / ``task.schedulers`` for
    ``'model'`` and ``'discriminator'``. The discriminator's schedule spans the steps it trains:
    ``max_train_steps - discriminator_start`` (the original mixed units there). The LeCam EMAs go
    into ``task.checkpoint_modules`` (saved as tensors; no pickle is read on resume).
    """
    cfg = task.cfg
    discriminator = NLayerDiscriminator3D(to_dataclass(cfg.model.discriminator))
    if task.accelerator.num_processes > 1 and task.accelerator.device.type == "cuda" and cfg.model.discriminator.norm == "batch":
        discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(discriminator)  # as the original's SyncBN
    task.models["discriminator"] = discriminator
    optimizer_cfg, schedule_cfg = to_dataclass(cfg.optimizer), to_dataclass(cfg.lr_scheduler)
    max_steps, start = cfg.training.max_train_steps, cfg.losses.discriminator_start
    task.optimizers["model"] = build_optimizer(generator, optimizer_cfg)
    task.schedulers["model"] = build_scheduler(task.optimizers["model"], schedule_cfg, total_steps=max_steps)
    task.optimizers["discriminator"] = build_optimizer(discriminator, optimizer_cfg,
                                                       learning_rate=cfg.optimizer.discriminator_learning_rate)
    task.schedulers["discriminator"] = build_scheduler(
        task.optimizers["discriminator"], schedule_cfg, total_steps=max(1, max_steps - start),
        warmup_steps=cfg.lr_scheduler.discriminator_warmup_steps)
    loss = ReconstructionGANLoss(to_dataclass(cfg.losses), discriminator)
    task.checkpoint_modules["lecam"] = loss.lecam
    if start >= max_steps:
        logger.info("losses.discriminator_start=%d >= max_train_steps=%d: the GAN terms never switch on",
                    start, max_steps)
    return loss


def gan_step(task, loss: ReconstructionGANLoss, video: torch.Tensor, reconstruction: torch.Tensor,
             step: int, quantizer_loss: Optional[torch.Tensor] = None) -> dict:
    """Generator step on ``optimizers['model']``, then (once active) the discriminator step; the logs."""
    loss.discriminator = task.models["discriminator"]  # the prepared (maybe DDP-wrapped) module
    total, logs = loss(video, reconstruction, step, mode="generator", quantizer_loss=quantizer_loss)
    task.backward(total, logs)
    task.optimizer_step("model")
    if loss.adversarial_active(step):
        d_total, d_logs = loss(video, reconstruction.detach(), step, mode="discriminator")
        task.backward(d_total, d_logs)
        task.optimizer_step("discriminator")
        logs.update(d_logs)
    return logs
