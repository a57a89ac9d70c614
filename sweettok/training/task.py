"""The interface a training stage implements to run on the shared ``Trainer``.

A task builds its parts (unprepared) in ``build``; the trainer prepares them with Accelerate, then
calls ``train_step`` once per micro-batch inside ``accelerator.accumulate(*models)``. The task does
its own forward, ``self.backward`` and ``self.optimizer_step`` (so a GAN stage can make a generator
step and then a discriminator step with separate optimizers); the trainer owns the loop, EMA,
logging, eval/generate cadence, checkpoints, resume and the export.

    class Stage1Task(Task):
        def build(self):
            self.models["model"] = Tokenizer(to_dataclass(self.cfg.model.tokenizer))
            self.optimizers["model"] = build_optimizer(self.models["model"], to_dataclass(self.cfg.optimizer))
            self.schedulers["model"] = build_scheduler(self.optimizers["model"], ..., total_steps=...)
            self.train_dataloader = build_dataloader(dataset, batch_size, seed=self.cfg.experiment.seed)

        def train_step(self, batch, step):
            loss, logs = self.models["model"](batch)      # forward under autocast (prepare does it)
            self.backward(loss, logs)
            self.optimizer_step("model")
            return logs
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator, Optional

import torch
from omegaconf import DictConfig
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from sweettok.training.trainer import Trainer


class NonFiniteLossError(RuntimeError):
    """A loss went NaN/inf; carries the step and the offending terms."""

    def __init__(self, step: int, terms: dict[str, float]):
        self.step = step
        self.terms = terms
        listed = ", ".join(f"{k}={v}" for k, v in terms.items()) or "the total loss (no terms given)"
        super().__init__(f"non-finite loss at step {step}: {listed}")


class Task:
    """One training stage. Subclasses override ``build`` and ``train_step``; the rest is optional."""

    main_model: str = "model"  # key in ``models`` that gets the EMA, evaluation and the export

    def __init__(self, cfg: DictConfig, trainer: "Trainer"):
        self.cfg = cfg
        self.trainer = trainer
        self.accelerator = trainer.accelerator
        self.output_dir = trainer.output_dir
        # Filled by ``build`` (plain objects); replaced in place by their prepared versions.
        self.models: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}  # same key as the optimizer it drives
        self.train_dataloader: Optional[torch.utils.data.DataLoader] = None
        self.eval_dataloader: Optional[torch.utils.data.DataLoader] = None  # prepared too (sharded)
        # Other state a checkpoint keeps (e.g. LeCam's EMA buffers): tensors only, in task_state.safetensors.
        self.checkpoint_modules: dict[str, nn.Module] = {}

    # ------------------------------------------------------------------ to implement

    def build(self) -> None:
        """Create models, optimizers, schedulers and dataloaders into the dicts above."""
        raise NotImplementedError

    def train_step(self, batch: Any, step: int) -> dict[str, Any]:
        """Forward, ``self.backward``, ``self.optimizer_step`` for one micro-batch; return scalar logs.

        ``step`` is the 0-based index of the optimizer step being made (constant across the micro-
        batches of one accumulated step). Keys without "/" are logged as ``train/<key>``.
        """
        raise NotImplementedError

    def evaluate(self, step: int) -> dict[str, float]:
        """Metrics on held-out data (run on every rank, EMA weights, eval mode, no grad). Keys -> ``val/``."""
        return {}

    def generate(self, step: int) -> None:
        """Write samples/reconstructions (every rank calls it; EMA weights, eval mode, no grad)."""

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights written to ``export/model.safetensors`` (called with the EMA weights swapped in)."""
        return self.unwrap(self.main_model).state_dict()

    # ------------------------------------------------------------------ helpers for train_step

    def unwrap(self, name: str) -> nn.Module:
        """The plain module behind ``models[name]`` (no DDP/compile wrapper)."""
        return self.accelerator.unwrap_model(self.models[name])

    def backward(self, loss: torch.Tensor, terms: Optional[dict[str, Any]] = None) -> None:
        """Check ``loss`` is finite on every rank (else raise NonFiniteLossError naming ``terms``), backprop."""
        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        if self.accelerator.num_processes > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        if bad.item() > 0:
            values = {k: float(v.detach() if isinstance(v, torch.Tensor) else v) for k, v in (terms or {}).items() if _is_scalar(v)}
            bad_terms = {k: v for k, v in values.items() if not _finite(v)} or {"loss": float(loss.detach())}
            raise NonFiniteLossError(self.trainer.step + 1, bad_terms)
        self.accelerator.backward(loss)

    def optimizer_step(self, name: str) -> Optional[torch.Tensor]:
        """Clip, step ``optimizers[name]`` and its scheduler, zero grads; only when gradients sync.

        Returns the pre-clip global gradient norm (logged as ``grad_norm/<name>``), or None on an
        accumulation micro-step.
        """
        return self.trainer.optimizer_step(name)

    @contextmanager
    def frozen(self, name: str) -> Iterator[nn.Module]:
        """The plain ``models[name]`` with requires_grad off for the ``with`` body (restored after).

        For a GAN's generator step: ``with self.frozen("discriminator") as d: logits = d(fake)``
        sends no gradient into D and bypasses its DDP wrapper (never toggle a wrapped module).
        """
        module = self.unwrap(name)
        flags = [(p, p.requires_grad) for p in module.parameters()]
        for p, _ in flags:
            p.requires_grad_(False)
        try:
            yield module
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) or (isinstance(value, torch.Tensor) and value.numel() == 1)


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))
