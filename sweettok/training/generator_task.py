"""Stage 3: the class-conditional GPT on dumped tokenizer indices (``experiment.train_stage: 3``).

Data: ``IndexDataset(dataset.index_dir)`` (shards of ``scripts/dump_indices.py``; no video is read).
The index layout comes from the dump's index file, and its class count must equal
``model.generator.num_classes``. Loss: cross-entropy over z's code positions with
``losses.label_smoothing``; class dropout (``model.generator.class_dropout``) trains the null class
for classifier-free guidance. The tokenizer that made the dump is ``experiment.init_weight`` (its
export folder); it is only loaded by ``generate``, which samples one clip for each of
``training.num_generate`` classes with the EMA weights and ``sampling.*``, decodes them through the
tokenizer's pixel path and writes a panel (one column per class) to ``<output_dir>/samples``.
The export is the GPT (``model.safetensors`` + ``config.yaml``) and ``generator.json`` (layout,
class names, tokenizer path and hash) that ``scripts/sample.py`` reads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from einops import rearrange
from torch import Tensor

from sweettok.config import ConfigError, to_dataclass
from sweettok.data.index_dataset import IndexDataset, TokenizerMismatchError, tokenizer_hash
from sweettok.data.video_writer import write_video
from sweettok.models.generator import ClassConditionalGPT
from sweettok.models.sampling import sample
from sweettok.training.data import build_dataloader
from sweettok.training.optim import build_optimizer
from sweettok.training.schedules import build_scheduler
from sweettok.training.task import Task

logger = logging.getLogger(__name__)

GENERATOR_META = "generator.json"


def generator_meta(dataset: IndexDataset, cfg) -> dict[str, Any]:
    """What sampling needs beside the weights: layout, classes, separators, the tokenizer."""
    return {"layout": dataset.layout.to_dict(), "num_classes": dataset.num_classes,
            "class_names": dataset.class_names, "separators": cfg.model.generator.separators,
            "tokenizer": cfg.experiment.init_weight, "tokenizer_hash": dataset.tokenizer_hash,
            "index_dir": cfg.dataset.index_dir}


def to_uint8_frames(video: Tensor, mean: float, std: float) -> np.ndarray:
    """(C, T, H, W) normalised clip -> uint8 (T, H, W, 3), undoing x' = (x/255 - mean) / std, clamped."""
    pixels = ((video.float() * std + mean) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return rearrange(pixels, "c t h w -> t h w c").cpu().numpy()


def sample_classes(num_classes: int, count: int) -> list[int]:
    """``count`` class ids spread evenly over [0, num_classes)."""
    count = max(1, min(count, num_classes))
    return sorted({int(round(x)) for x in np.linspace(0, num_classes - 1, count)})


class GeneratorTask(Task):
    """ClassConditionalGPT on an IndexDataset; samples decoded through the tokenizer as video panels."""

    def build(self) -> None:
        cfg = self.cfg
        dataset = IndexDataset(cfg.dataset.index_dir)
        if dataset.num_classes != cfg.model.generator.num_classes:
            raise ConfigError(
                f"model.generator.num_classes={cfg.model.generator.num_classes} but the dump in "
                f"{cfg.dataset.index_dir} has {dataset.num_classes} classes; set model.generator.num_classes="
                f"{dataset.num_classes}")
        if cfg.experiment.init_weight and Path(dataset.index["tokenizer"]).resolve() != Path(cfg.experiment.init_weight).resolve():
            logger.warning("the dump was made with tokenizer %s, experiment.init_weight is %s; the hashes are "
                           "compared when samples are decoded", dataset.index["tokenizer"], cfg.experiment.init_weight)
        self.dataset = dataset
        self.meta = generator_meta(dataset, cfg)
        model = ClassConditionalGPT(to_dataclass(cfg.model.generator), dataset.layout)
        logger.info("generator: %.2f M parameters, vocabulary %d, block size %d, %d training clips",
                    sum(p.numel() for p in model.parameters()) / 1e6, model.vocab.vocab_size,
                    model.block_size, len(dataset))
        self.models["model"] = model
        self.optimizers["model"] = build_optimizer(model, to_dataclass(cfg.optimizer))
        self.schedulers["model"] = build_scheduler(self.optimizers["model"], to_dataclass(cfg.lr_scheduler),
                                                   total_steps=cfg.training.max_train_steps)
        self.train_dataloader = build_dataloader(dataset, cfg.training.per_gpu_batch_size, seed=cfg.experiment.seed,
                                                 num_workers=0)  # in-memory tensors: workers only cost
        self._tokenizer = None

    def train_step(self, batch: Any, step: int) -> dict[str, Any]:
        loss, logs = self.models["model"](batch["indices"], batch["label"], return_loss=True,
                                          label_smoothing=self.cfg.losses.label_smoothing)
        self.backward(loss, logs)
        self.optimizer_step("model")
        return logs

    # ------------------------------------------------------------------ samples

    def tokenizer(self) -> Optional[torch.nn.Module]:
        """The tokenizer of ``experiment.init_weight`` (loaded once, hash-checked against the dump), or None."""
        if self._tokenizer is None:
            path = self.cfg.experiment.init_weight
            if not path or not Path(path).is_dir():
                logger.warning("experiment.init_weight=%r is not a tokenizer export folder: samples are not decoded",
                               path)
                return None
            from sweettok.models.tokenizer import SweetTok  # the GPT trains without it

            tokenizer = SweetTok.from_pretrained(path, map_location=str(self.accelerator.device))
            digest = tokenizer_hash(tokenizer)
            if digest != self.dataset.tokenizer_hash:
                raise TokenizerMismatchError(f"experiment.init_weight {path} (hash {digest}) is not the tokenizer that "
                                             f"made {self.cfg.dataset.index_dir} (hash {self.dataset.tokenizer_hash})")
            if not tokenizer.has_pixel_decoder:
                logger.warning("%s has no pixel decoder (a stage-1 export): samples are not decoded", path)
                return None
            self._tokenizer = tokenizer
        return self._tokenizer

    def generate(self, step: int) -> None:
        if not self.accelerator.is_main_process:
            return
        tokenizer = self.tokenizer()
        if tokenizer is None:
            return
        sampling = self.cfg.sampling
        classes = sample_classes(self.dataset.num_classes, self.cfg.training.num_generate)
        device = self.accelerator.device
        generator = torch.Generator(device=device).manual_seed(sampling.seed)
        indices = sample(self.unwrap("model"), torch.tensor(classes, device=device), sampling.temperature,
                         sampling.top_k, sampling.top_p, sampling.cfg_scale, sampling.cfg_schedule, generator,
                         sampling.use_kv_cache)
        videos = tokenizer.decode_indices_to_pixels(indices)  # (B, C, T, H, W)
        data = self.cfg.dataset
        frames = np.concatenate([to_uint8_frames(v, data.mean, data.std) for v in videos], axis=2)  # (T, H, B*W, 3)
        self._save_panel(frames, step, [self.dataset.class_names[c] for c in classes])

    def _save_panel(self, frames: np.ndarray, step: int, names: list[str]) -> None:
        folder = self.output_dir / "samples"
        path = write_video(folder / f"generator_samples_{step:08d}.gif", frames, fps=8)  # 120 ms frames (GIF stores 10 ms units)
        (folder / f"generator_samples_{step:08d}.json").write_text(json.dumps({"columns": names}))
        logger.info("step %d: samples of %s -> %s", step, ", ".join(names), path)
        if any(t.name == "wandb" for t in getattr(self.accelerator, "trackers", [])):
            import wandb

            self.accelerator.get_tracker("wandb", unwrap=True).log(
                {"media/generator_samples": wandb.Video(str(path), fps=8, format="gif")}, step=step)

    # ------------------------------------------------------------------ export

    def export_state_dict(self) -> dict[str, Tensor]:
        """The GPT's weights; ``generator.json`` goes beside them (main process)."""
        if self.accelerator.is_main_process:
            out = self.output_dir / "export"
            out.mkdir(parents=True, exist_ok=True)
            (out / GENERATOR_META).write_text(json.dumps(self.meta, indent=1))
        return self.unwrap("model").state_dict()
