"""The one training loop every stage runs on (TiTok's Accelerate recipe, nanoGPT's last_step habit).

config -> Accelerator -> task.build() -> accelerator.prepare -> exact resume -> loop -> export.
Each iteration feeds one micro-batch to ``task.train_step`` inside ``accelerator.accumulate``; after
a synchronising micro-batch the optimizer step is complete, ``step`` advances, the EMA updates, and
logging, evaluation, generation and checkpoints run on their cadence (and all at the last step).
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from accelerate.utils import broadcast_object_list, set_seed
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from sweettok.config import save_config
from sweettok.training.accelerator import build_accelerator
from sweettok.training.checkpoint import (
    CheckpointError, export_model, list_checkpoints, load_checkpoint, prune_checkpoints, read_checkpoint_meta,
    save_checkpoint,
)
from sweettok.training.data import DataReport
from sweettok.training.ema import EMA
from sweettok.training.logs import flatten, new_run_id, setup_logging, tracker_init_kwargs
from sweettok.training.performance import apply_training_options
from sweettok.training.resume_config import check_resume_config
from sweettok.training.run_folder import OutputFolderBusyError, RunLock, claim_output_folder
from sweettok.training.task import NonFiniteLossError, Task

logger = logging.getLogger(__name__)

TaskFactory = Callable[[DictConfig, "Trainer"], Task]


def _due(every: int, step: int, last_step: bool) -> bool:
    return every > 0 and (step % every == 0 or last_step)


def _namespaced(logs: dict[str, Any], default: str) -> dict[str, Any]:
    return {(k if "/" in k else f"{default}/{k}"): v for k, v in logs.items()}


class TrainingInterrupted(RuntimeError):
    """SIGTERM (e.g. preemption) or Ctrl-C stopped the run after saving a checkpoint; rerunning resumes it."""

    def __init__(self, step: int, folder: Path, signal_name: str = "SIGTERM"):
        self.step, self.folder, self.signal_name = step, folder, signal_name
        super().__init__(f"stopped by {signal_name} at step {step}; checkpoint saved in {folder}: run the same "
                         "command again to resume")


class Trainer:
    """Runs a Task: builds the Accelerator, prepares the task's parts, resumes, trains, exports."""

    def __init__(self, cfg: DictConfig, task_factory: TaskFactory):
        self.cfg = cfg
        self.output_dir = Path(cfg.experiment.output_dir)
        self.accelerator = build_accelerator(cfg)
        self._lock, moved = self._claim_output_folder()
        try:
            self._setup(task_factory, moved)
        except BaseException:
            self._release()
            raise

    def _claim_output_folder(self) -> tuple[Optional[RunLock], Optional[Path]]:
        """One run per folder (main process locks it); an older run goes aside on a fresh start.

        A refusal reaches every rank, so none waits for a main process that has stopped.
        """
        acc, lock, moved, refusal = self.accelerator, None, None, None
        if acc.is_main_process:
            try:
                lock, moved = claim_output_folder(self.output_dir, self.cfg.experiment.resume)
            except OutputFolderBusyError as err:
                refusal = str(err)
        if acc.num_processes > 1:
            refusal = broadcast_object_list([refusal])[0]
        if refusal is not None:
            raise OutputFolderBusyError(refusal)
        return lock, moved

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def _setup(self, task_factory: TaskFactory, moved: Optional[Path]) -> None:
        cfg = self.cfg
        setup_logging(self.output_dir, self.accelerator.is_main_process)
        if moved is not None:
            logger.warning("experiment.resume=false: the earlier run in %s was moved to %s", self.output_dir, moved)
        self._stop_signal = ""  # the name of the signal that asked this rank to stop
        self._previous_sigint: Any = None
        self.data_report = DataReport()  # unreadable / padded clips, logged per epoch
        self.step, self.epoch, self.batches_in_epoch = 0, 0, 0
        self._step_logs: dict[str, Any] = {}  # lr / grad norms of the current optimizer step
        self.run_id = new_run_id()  # the tracker run; a resume continues the checkpoint's
        if self.accelerator.is_main_process:
            save_config(cfg, self.output_dir / "config.yaml")
        logger.info("%d process(es), device %s, mixed precision %s", self.accelerator.num_processes,
                    self.accelerator.device, self.accelerator.mixed_precision)

        set_seed(cfg.experiment.seed)  # same seed on every rank: identical initial weights everywhere
        self.task = task_factory(cfg, self)
        self.task.build()
        self._prepare()
        set_seed(cfg.experiment.seed, device_specific=True)  # per-rank randomness from here on
        main = self.task.unwrap(self.task.main_model)
        self.ema = EMA(main, cfg.training.ema_decay).to(self.accelerator.device) if cfg.training.use_ema else None
        self._grad_norm_owner = {id(p): f"{name}.{child}" for name in self.task.models
                                 for child, mod in self.task.unwrap(name).named_children() for p in mod.parameters()}
        if cfg.experiment.resume:
            self._resume()

    # ------------------------------------------------------------------ setup

    def _prepare(self) -> None:
        """accelerator.prepare every trainable model, optimizer, scheduler and dataloader of the task."""
        task, acc = self.task, self.accelerator
        if task.main_model not in task.models:
            raise KeyError(f"{type(task).__name__}.build() made no models['{task.main_model}']")
        if task.train_dataloader is None:
            raise ValueError(f"{type(task).__name__}.build() set no train_dataloader")
        unknown = set(task.schedulers) - set(task.optimizers)
        if unknown:
            raise KeyError(f"schedulers {sorted(unknown)} have no optimizer of the same name")
        # Frozen models (no trainable parameter) are only moved: DDP refuses them, and nothing to save.
        trainable = [n for n, m in task.models.items() if any(p.requires_grad for p in m.parameters())]
        for name in set(task.models) - set(trainable):
            task.models[name].to(acc.device)
        for name in trainable:  # activation checkpointing, torch.compile (training.*; off by default)
            apply_training_options(task.models[name], self.cfg.training)
        groups = [(task.models, trainable), (task.optimizers, list(task.optimizers)),
                  (task.schedulers, list(task.schedulers))]
        objects = [d[k] for d, keys in groups for k in keys] + [task.train_dataloader]
        if task.eval_dataloader is not None:
            objects.append(task.eval_dataloader)
        prepared = iter(acc.prepare(*objects))
        for d, keys in groups:
            for k in keys:
                d[k] = next(prepared)
        task.train_dataloader = next(prepared)
        if task.eval_dataloader is not None:
            task.eval_dataloader = next(prepared)
        self._trainable_models = [task.models[n] for n in trainable]
        if len(task.train_dataloader) == 0:
            raise ValueError("the train dataloader yields no batch (dataset smaller than one batch per process?)")

    def _init_trackers(self) -> None:
        exp = self.cfg.experiment
        if exp.logger == "none":
            return
        config = flatten(OmegaConf.to_container(self.cfg, resolve=True))
        self.accelerator.init_trackers(exp.project, config=config,
                                       init_kwargs=tracker_init_kwargs(exp.logger, exp.name, self.output_dir, self.run_id))

    def _resume(self) -> None:
        """Load the newest readable checkpoint; a damaged one is named and the previous one is used."""
        candidates = [folder for _, folder in reversed(list_checkpoints(self.output_dir))]
        if not candidates:
            logger.info("no checkpoint in %s: starting from scratch", self.output_dir)
            return
        damaged = []
        for folder in candidates:
            try:
                check_resume_config(read_checkpoint_meta(folder).get("config", {}), self.cfg, str(folder))
                meta = load_checkpoint(self.accelerator, folder, self.ema, self.task.checkpoint_modules)
                break
            except CheckpointError as err:
                damaged.append(folder)
                others = "falling back to the previous checkpoint" if folder != candidates[-1] else "no other left"
                logger.warning("cannot resume from %s: %s; %s", folder, err, others)
        else:
            raise CheckpointError(
                f"no checkpoint in {self.output_dir} can be resumed from ({len(damaged)} damaged; last error above): "
                "delete or move the damaged checkpoint-* folders, or start anew with experiment.resume=false "
                "and another experiment.output_dir")
        if damaged:
            logger.warning("resumed from the older %s; skipped damaged %s (its later steps are trained again)",
                           folder.name, ", ".join(f.name for f in damaged))
        self.step, self.epoch, self.batches_in_epoch = meta["step"], meta["epoch"], meta["batches_in_epoch"]
        self.run_id = meta.get("run_id", self.run_id)
        saved_procs = meta.get("num_processes", self.accelerator.num_processes)
        if saved_procs != self.accelerator.num_processes:
            # Same samples seen, approximately: the batch order of a different world size differs anyway.
            self.batches_in_epoch = self.batches_in_epoch * saved_procs // self.accelerator.num_processes
            logger.warning("resuming with %d processes from a %d-process checkpoint: data order is not exact",
                           self.accelerator.num_processes, saved_procs)
        logger.info("resumed from %s (step %d, epoch %d, batch %d of the epoch)",
                    folder, self.step, self.epoch, self.batches_in_epoch)

    # ------------------------------------------------------------------ helpers the task calls

    def optimizer_step(self, name: str) -> Optional[torch.Tensor]:
        """Clip, step optimizer ``name`` and its scheduler, zero its grads (only when gradients sync)."""
        acc = self.accelerator
        if not acc.sync_gradients:
            return None  # accumulation micro-step: the wrapped optimizer would skip anyway
        optimizer = self.task.optimizers[name]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        max_norm = self.cfg.training.max_grad_norm
        norm = acc.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf)
        self._step_logs[f"grad_norm/{name}"] = norm
        self._step_logs[f"lr/{name}"] = optimizer.param_groups[0]["lr"]  # the lr this step uses
        if _due(self.cfg.experiment.log_grad_norm_every, self.step + 1, False):
            self._step_logs.update(self._module_grad_norms(params))
        optimizer.step()
        if name in self.task.schedulers:
            self.task.schedulers[name].step()
        optimizer.zero_grad(set_to_none=True)
        return norm

    def _module_grad_norms(self, params: list[torch.nn.Parameter]) -> dict[str, torch.Tensor]:
        """Post-clip gradient norm of each top-level child module (``grad_norm/<model>.<child>``)."""
        squares: dict[str, torch.Tensor] = {}
        for p in params:
            owner = self._grad_norm_owner.get(id(p))
            if owner is not None and p.grad is not None:
                squares[owner] = squares.get(owner, 0.0) + p.grad.detach().float().pow(2).sum()
        return {f"grad_norm/{k}": v.sqrt() for k, v in squares.items()}

    # ------------------------------------------------------------------ loop

    def fit(self) -> Path:
        """Train to ``training.max_train_steps``; return the export folder.

        SIGTERM, or a first Ctrl-C (SIGINT), saves a checkpoint at the end of the current step and
        raises TrainingInterrupted; a second Ctrl-C stops at once (KeyboardInterrupt, nothing saved).
        """
        previous = _set_handler(signal.SIGTERM, self._on_stop_signal)
        self._previous_sigint = _set_handler(signal.SIGINT, self._on_stop_signal)
        try:
            self._init_trackers()
            try:
                self._loop()
            except NonFiniteLossError as err:
                folder = self.save(suffix="-nonfinite", step=err.step)
                err.args = (f"{err.args[0]}; the state before that step is in {folder} (never resumed from)",)
                self.accelerator.end_training()
                raise
            export_dir = self.export()
            self.accelerator.end_training()
            return export_dir
        finally:
            for signum, handler in ((signal.SIGTERM, previous), (signal.SIGINT, self._previous_sigint)):
                if handler is not None:  # None: not settable here, or set outside Python
                    _set_handler(signum, handler)
            self._release()

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGINT:  # the next Ctrl-C gets the previous behaviour: stop now
            _set_handler(signal.SIGINT, self._previous_sigint or signal.default_int_handler)
            logger.warning("Ctrl-C: saving a checkpoint at the end of step %d, then stopping (Ctrl-C again to stop "
                           "at once without saving)", self.step + 1)
        else:
            logger.warning("%s: saving a checkpoint at the end of step %d, then stopping", name, self.step + 1)
        self._stop_signal = self._stop_signal or name

    def _stop_requested(self) -> bool:
        """Whether any rank got SIGTERM or Ctrl-C (all ranks then save together: the save is collective)."""
        flag = bool(self._stop_signal)
        if self.accelerator.num_processes > 1:
            flag = bool(self.accelerator.reduce(torch.tensor([float(flag)], device=self.accelerator.device),
                                                reduction="sum").item() > 0)
        return flag

    def _epoch_batches(self) -> Optional[Iterator]:
        """This epoch's dataloader, past the batches a resumed run already consumed (None if all)."""
        loader = self.task.train_dataloader
        if hasattr(loader, "set_epoch"):  # the original called sampler.set_epoch unconditionally
            loader.set_epoch(self.epoch)
        if self.batches_in_epoch >= len(loader):
            return None
        if self.batches_in_epoch:
            loader = self.accelerator.skip_first_batches(loader, self.batches_in_epoch)
        return iter(loader)

    def _loop(self) -> None:
        acc, cfg = self.accelerator, self.cfg
        max_steps = cfg.training.max_train_steps
        progress = tqdm(total=max_steps, initial=self.step, disable=not acc.is_main_process, desc="train")
        try:
            self._epochs(progress)
        finally:
            progress.close()  # before any error message, so it is not glued to the bar

    def _epochs(self, progress: tqdm) -> None:
        acc, cfg = self.accelerator, self.cfg
        max_steps = cfg.training.max_train_steps
        window = {"data": 0.0, "batch": 0.0, "steps": 0}
        while self.step < max_steps:
            batches = self._epoch_batches()
            tick = step_start = time.perf_counter()
            for batch in batches or ():
                window["data"] += time.perf_counter() - tick
                self.data_report.add(batch)
                with acc.accumulate(*self._trainable_models):
                    logs = self.task.train_step(batch, self.step)
                self.batches_in_epoch += 1
                tick = time.perf_counter()
                if not acc.sync_gradients:
                    continue
                self.step += 1
                if self.ema is not None:
                    self.ema.update(self.task.unwrap(self.task.main_model))
                window["batch"] += time.perf_counter() - step_start
                window["steps"] += 1
                last_step = self.step >= max_steps
                progress.update(1)
                if _due(cfg.experiment.log_every, self.step, last_step):
                    self._log(logs, window, progress)
                    window = {"data": 0.0, "batch": 0.0, "steps": 0}
                self._step_logs = {}
                self._hooks(last_step)
                if not last_step and self._stop_requested():
                    saved = self.output_dir / f"checkpoint-{self.step}"
                    if not _due(cfg.experiment.save_every, self.step, last_step):
                        saved = self.save()
                    raise TrainingInterrupted(self.step, saved, self._stop_signal or "a signal on another rank")
                tick = step_start = time.perf_counter()
                if last_step:
                    break
            else:
                self._log_data(self.data_report.summary(acc, f"data of epoch {self.epoch}"))
                self.epoch, self.batches_in_epoch = self.epoch + 1, 0
        self._log_data(self.data_report.summary(acc, f"data of epoch {self.epoch} (to step {self.step})"))
        self._log_data(self.data_report.run_summary(acc))

    @staticmethod
    def _log_data(summary: Optional[tuple[str, bool]]) -> None:
        if summary is not None:
            logger.log(logging.WARNING if summary[1] else logging.INFO, summary[0])

    def _hooks(self, last_step: bool) -> None:
        exp = self.cfg.experiment
        if _due(exp.eval_every, self.step, last_step):
            with self.eval_weights():
                metrics = self.task.evaluate(self.step)
            if metrics:
                metrics = {k: float(v) for k, v in _namespaced(metrics, "val").items()}
                self.accelerator.log(metrics, step=self.step)
                self._append_metrics(metrics)
                logger.info("step %d eval: %s", self.step, _format(metrics))
        if _due(exp.generate_every, self.step, last_step):
            with self.eval_weights():
                self.task.generate(self.step)
        if _due(exp.save_every, self.step, last_step):
            self.save()

    def _log(self, logs: dict[str, Any], window: dict[str, float], progress: tqdm) -> None:
        """Scalars of this step (task logs averaged over ranks) plus lr, grad norms, timings."""
        acc = self.accelerator
        scalars = {**_namespaced(logs or {}, "train"), **self._step_logs}
        names = list(scalars)
        values = torch.stack([torch.as_tensor(scalars[k], dtype=torch.float32, device=acc.device).detach().reshape(())
                              for k in names]) if names else torch.zeros(0, device=acc.device)
        if acc.num_processes > 1 and names:
            values = acc.reduce(values, reduction="mean")
        out = dict(zip(names, values.tolist()))
        steps = max(1, window["steps"])
        batch_time = window["batch"] / steps
        samples = getattr(self.task.train_dataloader, "total_batch_size", None) or 0
        out.update({"time/data": window["data"] / steps, "time/batch": batch_time,
                    "throughput/samples_per_s": samples * acc.gradient_accumulation_steps / max(batch_time, 1e-9)})
        acc.log(out, step=self.step)
        self._append_metrics(out)
        progress.set_postfix({k.split("/")[-1]: f"{v:.4g}" for k, v in out.items() if k.startswith("train/")}, refresh=False)
        logger.info("step %d: %s", self.step, _format(out))

    def _append_metrics(self, scalars: dict[str, float]) -> None:
        """Also keep every logged scalar in ``metrics.jsonl`` (plots and reports need no tracker)."""
        if self.accelerator.is_main_process:
            with open(self.output_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step, **scalars}) + "\n")

    # ------------------------------------------------------------------ weights

    @contextmanager
    def eval_weights(self, use_ema: Optional[bool] = None) -> Iterator[None]:
        """Every model in eval mode, no grad, and the EMA weights in the main model (restored after)."""
        use_ema = (self.cfg.training.use_ema and self.cfg.eval.use_ema) if use_ema is None else use_ema
        modes = [(m, m.training) for model in self.task.models.values() for m in model.modules()]
        for model in self.task.models.values():
            model.eval()
        try:
            with torch.no_grad():
                if use_ema and self.ema is not None:
                    with self.ema.swap(self.task.unwrap(self.task.main_model)):
                        yield
                else:
                    yield
        finally:
            for module, mode in modes:
                module.training = mode

    def save(self, suffix: str = "", step: Optional[int] = None) -> Path:
        """Write ``checkpoint-<step><suffix>/`` (collective), then prune old regular checkpoints."""
        step = self.step if step is None else step
        meta = {"step": self.step, "epoch": self.epoch, "batches_in_epoch": self.batches_in_epoch,
                "num_processes": self.accelerator.num_processes, "run_id": self.run_id}
        folder = save_checkpoint(self.accelerator, self.output_dir / f"checkpoint-{step}{suffix}",
                                 meta, self.cfg, self.ema, self.task.checkpoint_modules)
        if not suffix and self.accelerator.is_main_process:
            prune_checkpoints(self.output_dir, self.cfg.experiment.keep_last_checkpoints)
        return folder

    def export(self) -> Path:
        """Write ``export/model.safetensors`` + ``config.yaml`` with the EMA weights (if kept)."""
        out = self.output_dir / "export"
        self.accelerator.wait_for_everyone()
        with self.eval_weights(use_ema=self.cfg.training.use_ema):
            state = self.task.export_state_dict()
            if self.accelerator.is_main_process:
                export_model(state, self.cfg, out)
        self.accelerator.wait_for_everyone()
        return out


def _set_handler(signum: int, handler: Any) -> Any:
    """Install a handler of ``signum``, returning the previous one (no-op outside the main thread)."""
    try:
        return signal.signal(signum, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        return None


def _format(scalars: dict[str, float]) -> str:
    return " | ".join(f"{k} {v:.4g}" for k, v in scalars.items())
