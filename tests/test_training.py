"""The generic trainer on a test-only task (a tiny MLP regression): resume, atomic saves, DDP, precision.

Run as a script (``accelerate launch ... tests/test_training.py OUTPUT_DIR``) it trains the same task,
which is how the two-process test drives it.
"""

from __future__ import annotations

import functools
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from accelerate.state import AcceleratorState, GradientState
from torch import nn
from torch.utils.data import Dataset

from sweettok.config import load_config, to_dataclass
from sweettok.data.demo import DemoSpec, make_demo_dataset
from sweettok.data.video_dataset import VideoDataset
from sweettok.training.checkpoint import latest_checkpoint, list_checkpoints, load_export, read_meta
from sweettok.training.data import build_dataloader
from sweettok.training.ema import EMA
from sweettok.training.optim import build_optimizer, param_groups
from sweettok.training.schedules import build_scheduler, lr_at
from sweettok.training.task import NonFiniteLossError, Task
from sweettok.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the test task


class IndexedRegression(Dataset):
    """(index, x, y) with y a fixed linear function of x: the index lets tests check data order."""

    def __init__(self, size: int = 24):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(size, 4, generator=g)
        self.y = self.x @ torch.randn(4, 1, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return i, self.x[i], self.y[i]


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.zeros(1, 16))
        self.proj_in = nn.Linear(4, 16)
        self.norm = nn.LayerNorm(16)
        self.dropout = nn.Dropout(0.2)  # randomness: exact resume must restore the RNG too
        self.head = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.norm(self.proj_in(x) + self.pos_embedding)))


class RegressionTask(Task):
    """Test fixture: MSE regression; records batch indices and lrs; can stop or go NaN at a step."""

    def __init__(self, cfg, trainer, stop_at: int = -1, nan_at: int = -1, sigterm_at: int = -1, sigint_at: int = -1,
                 sigint_count: int = 1):
        super().__init__(cfg, trainer)
        self.stop_at, self.nan_at, self.sigterm_at = stop_at, nan_at, sigterm_at
        self.sigint_at, self.sigint_count = sigint_at, sigint_count
        self.seen: list[list[int]] = []
        self.lrs: dict[int, float] = {}

    def build(self) -> None:
        cfg = self.cfg
        self.models["model"] = TinyMLP()
        self.optimizers["model"] = build_optimizer(self.models["model"], to_dataclass(cfg.optimizer))
        self.schedulers["model"] = build_scheduler(
            self.optimizers["model"], to_dataclass(cfg.lr_scheduler), cfg.training.max_train_steps
        )
        self.train_dataloader = build_dataloader(IndexedRegression(), cfg.training.per_gpu_batch_size, cfg.experiment.seed)

    def train_step(self, batch, step: int) -> dict:
        if step == self.stop_at:
            raise KeyboardInterrupt(f"simulated kill at step {step}")
        if step == self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)  # preemption in the middle of a step
        if step == self.sigint_at:
            for _ in range(self.sigint_count):  # Ctrl-C pressed once or twice during a step
                signal.raise_signal(signal.SIGINT)  # in this thread, handled before it returns: no merged presses
        index, x, y = batch
        self.seen.append(index.tolist())
        self.lrs[step] = self.optimizers["model"].param_groups[0]["lr"]
        loss = F.mse_loss(self.models["model"](x).float(), y)
        if step == self.nan_at:
            loss = loss * float("nan")
        self.backward(loss, {"loss": loss})
        self.optimizer_step("model")
        return {"loss": loss.detach()}


class TwoOptimizerTask(RegressionTask):
    """Stage-2 shaped fixture: a model step through a frozen critic, then the critic's own step."""

    def build(self) -> None:
        super().build()
        self.models["critic"] = nn.Linear(1, 1)
        self.optimizers["critic"] = build_optimizer(self.models["critic"], to_dataclass(self.cfg.optimizer), 1e-3)
        self.critic_grads_after_model_step: list[bool] = []

    def train_step(self, batch, step: int) -> dict:
        _, x, y = batch
        pred = self.models["model"](x)
        with self.frozen("critic") as critic:
            model_loss = F.mse_loss(pred, y) + 0.1 * critic(pred).mean()
        self.backward(model_loss)
        self.critic_grads_after_model_step.append(any(p.grad is not None for p in self.models["critic"].parameters()))
        self.optimizer_step("model")
        critic_loss = (self.models["critic"](pred.detach()) - y).pow(2).mean()
        self.backward(critic_loss)
        self.optimizer_step("critic")
        return {"model_loss": model_loss.detach(), "critic_loss": critic_loss.detach()}


class ClipRegressor(nn.Module):
    """Pooled clip -> label: tiny, with dropout so the model-side RNG matters too."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d((2, 4, 4))
        self.proj_in = nn.Linear(3 * 2 * 4 * 4, 8)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(8, 1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.proj_in(self.pool(video).flatten(1))))  # (B, 1)


class ClipTask(RegressionTask):
    """The real VideoDataset (random starts and flips) behind the trainer's own dataloader."""

    def build(self) -> None:
        cfg = self.cfg
        self.models["model"] = ClipRegressor()
        self.optimizers["model"] = build_optimizer(self.models["model"], to_dataclass(cfg.optimizer))
        self.schedulers["model"] = build_scheduler(
            self.optimizers["model"], to_dataclass(cfg.lr_scheduler), cfg.training.max_train_steps
        )
        dataset = VideoDataset(to_dataclass(cfg.dataset), "train", seed=cfg.experiment.seed)
        self.train_dataloader = build_dataloader(dataset, cfg.training.per_gpu_batch_size, cfg.experiment.seed,
                                                 num_workers=cfg.dataset.num_workers)

    def train_step(self, batch, step: int) -> dict:
        video, label = batch["video"], batch["label"].float()[:, None]
        self.seen.append([f"{k}:{float(v.sum()):.6f}" for k, v in zip(batch["key"], video)])  # which clip, which draw
        loss = F.mse_loss(self.models["model"](video), label)
        self.backward(loss, {"loss": loss})
        self.optimizer_step("model")
        return {"loss": loss.detach()}


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    """12 small demo clips (one per class) of 12 frames, 24 x 24."""
    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, DemoSpec(train_clips_per_class=1, test_clips_per_class=1, num_frames=12, size=24))
    return root


def make_cfg(out: Path, *overrides: str):
    return load_config(None, [
        f"experiment.output_dir={out}", "experiment.logger=none", "experiment.log_every=1",
        "experiment.eval_every=0", "experiment.generate_every=0", "experiment.save_every=1000",
        "training.per_gpu_batch_size=4", "training.max_train_steps=8", "training.ema_decay=0.9",
        "lr_scheduler.warmup_steps=3", "lr_scheduler.end_lr=1e-4", "optimizer.learning_rate=1e-2",
        *overrides,
    ])


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")  # tests/conftest.py


def new_trainer(cfg, task_class: type = RegressionTask, **task_kwargs) -> Trainer:
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    return Trainer(cfg, functools.partial(task_class, **task_kwargs))


def snapshot(trainer: Trainer) -> dict:
    model = trainer.task.unwrap("model")
    opt = trainer.task.optimizers["model"].state_dict()["state"]
    return {
        "params": {k: v.clone() for k, v in model.state_dict().items()},
        "ema": {k: v.clone() for k, v in trainer.ema.shadow.items()},
        "adam": {(i, k): v.clone() for i, s in opt.items() for k, v in s.items()},
        "lr": trainer.task.schedulers["model"].get_last_lr(),
        "rng": torch.get_rng_state(),
    }


def assert_same(a: dict, b: dict) -> None:
    for key in ("params", "ema", "adam"):
        assert a[key].keys() == b[key].keys(), key
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key} {name} differs"
    assert a["lr"] == b["lr"]
    assert torch.equal(a["rng"], b["rng"])


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("accumulation, save_at, position", [(2, 4, (1, 2)), (1, 6, (0, 6))])
def test_exact_resume_matches_a_straight_run(tmp_path, accumulation, save_at, position):
    """Killed after a checkpoint, then resumed == straight: weights, EMA, Adam state, lr, RNG, data order.

    6 batches per epoch: accumulation 2 puts checkpoint-4 in the middle of epoch 1; checkpoint-6 of
    the second case sits exactly at the end of epoch 0.
    """
    overrides = [f"training.gradient_accumulation_steps={accumulation}", f"experiment.save_every={save_at}"]
    straight = new_trainer(make_cfg(tmp_path / "a", *overrides))
    straight.fit()
    expected = snapshot(straight)

    first = new_trainer(make_cfg(tmp_path / "b", *overrides), stop_at=save_at)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    meta = read_meta(tmp_path / "b" / f"checkpoint-{save_at}")
    assert (meta["step"], meta["epoch"], meta["batches_in_epoch"]) == (save_at, *position)
    resumed = new_trainer(make_cfg(tmp_path / "b", *overrides))
    assert resumed.step == save_at
    resumed.fit()

    assert_same(snapshot(resumed), expected)
    assert first.task.seen + resumed.task.seen == straight.task.seen
    assert sorted(sum(straight.task.seen[:6], [])) == list(range(24))  # epoch 0 covers the data once
    assert straight.task.seen[6:12] != straight.task.seen[:6]  # and epoch 1 is reshuffled
    # the export holds the EMA weights and its config, loadable by the next stage
    state, cfg = load_export(tmp_path / "b" / "export")
    assert cfg.training.gradient_accumulation_steps == accumulation
    for name, value in expected["ema"].items():
        assert torch.equal(state[name], value)


@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume_with_video_dataset_at_any_step(tmp_path, demo_root, workers):
    """Real VideoDataset (random clip starts and flips), 0 and 2 workers: resume from checkpoints in the
    middle (steps 1, 2, 5) and at the end (step 3) of an epoch == the straight run, bit for bit.

    12 clips, batch 4: 3 batches per epoch. The straight run saves at every step while the loader has
    already prefetched the next batch; each resume starts from a copy of one of those checkpoints.
    """
    data = [f"dataset.root={demo_root}", f"dataset.train_list={demo_root / 'train.txt'}",
            f"dataset.eval_list={demo_root / 'test.txt'}", "dataset.num_frames=4", "dataset.resolution=16",
            "dataset.frame_stride=2", f"dataset.num_workers={workers}", "training.max_train_steps=7"]
    straight = new_trainer(make_cfg(tmp_path / "a", *data, "experiment.save_every=1",
                                    "experiment.keep_last_checkpoints=0"), ClipTask)
    straight.fit()
    expected = snapshot(straight)
    assert len(set(sum(straight.task.seen[:3], []))) == 12
    assert straight.task.seen[3:6] != straight.task.seen[:3]  # other order and other draws in epoch 1
    for kill in (1, 2, 3, 5):
        out = tmp_path / f"resume-{kill}"
        shutil.copytree(tmp_path / "a" / f"checkpoint-{kill}", out / f"checkpoint-{kill}")
        resumed = new_trainer(make_cfg(out, *data), ClipTask)
        assert resumed.step == kill
        resumed.fit()
        assert resumed.task.seen == straight.task.seen[kill:], f"data differs after a resume at step {kill}"
        assert_same(snapshot(resumed), expected)


def test_bad_files_are_summarised_per_epoch_across_workers(tmp_path, demo_root, caplog):
    """3 unreadable files among 15, 2 workers: each epoch's summary counts them once, the run log totals them."""
    lines = (demo_root / "train.txt").read_text().splitlines()
    for i in range(3):
        (tmp_path / f"broken{i}.mp4").write_bytes(b"not a video" * 50)
        lines.append(f"{tmp_path / f'broken{i}.mp4'}\t1")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    cfg = make_cfg(tmp_path / "out", f"dataset.root={demo_root}", f"dataset.train_list={tmp_path / 'list.txt'}",
                   f"dataset.eval_list={demo_root / 'test.txt'}", "dataset.num_frames=4", "dataset.resolution=16",
                   "dataset.num_workers=2", "training.per_gpu_batch_size=5", "training.max_train_steps=6")
    with caplog.at_level("INFO"):
        new_trainer(cfg, ClipTask).fit()
    assert "data of epoch 0: 15 clips, 3 replaced for 3 unreadable file(s): " in caplog.text
    assert "data of epoch 1 (to step 6): 15 clips, 3 replaced for 3 unreadable file(s): " in caplog.text
    assert "data of this run: 30 clips, 6 replaced for 3 unreadable file(s)" in caplog.text
    assert "data of this run" in (tmp_path / "out" / "train.log").read_text()


def test_kill_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    """A save that dies after partial writes leaves checkpoint-2 intact; resume ignores the leftover."""
    cfg = make_cfg(tmp_path, "experiment.save_every=2", "training.max_train_steps=4")
    calls = {"n": 0}
    original_save = EMA.save

    def dying_save(self, path):
        calls["n"] += 1
        if calls["n"] == 2:  # the step-4 save: write half a file, then "get killed"
            Path(path).write_bytes(b"partial")
            raise KeyboardInterrupt("killed during save")
        original_save(self, path)

    monkeypatch.setattr(EMA, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        new_trainer(cfg).fit()
    monkeypatch.setattr(EMA, "save", original_save)

    assert (tmp_path / ".tmp-checkpoint-4").is_dir()
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-2"
    resumed = new_trainer(cfg)
    assert resumed.step == 2
    resumed.fit()
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2, 4]
    assert not (tmp_path / ".tmp-checkpoint-4").exists()


class Payload:
    """Unpickling this runs code (touches a marker file): what a planted checkpoint file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class LeCamTask(RegressionTask):
    """Keeps loss-side state (LeCam's EMAs) in ``checkpoint_modules``."""

    def build(self) -> None:
        super().build()
        from sweettok.losses.gan import LeCamEMA

        self.lecam = LeCamEMA(0.5)
        self.checkpoint_modules["lecam"] = self.lecam

    def train_step(self, batch, step: int) -> dict:
        logs = super().train_step(batch, step)
        self.lecam.update(logs["loss"], -logs["loss"])
        return logs


def test_task_state_resumes_from_tensors_and_planted_pickles_never_run(tmp_path, caplog):
    cfg = make_cfg(tmp_path, "experiment.save_every=2", "training.max_train_steps=4")
    straight = new_trainer(make_cfg(tmp_path / "straight", "training.max_train_steps=4"), LeCamTask)
    straight.fit()
    first = new_trainer(cfg, LeCamTask, stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    folder = tmp_path / "checkpoint-2"
    assert {p.suffix for p in folder.iterdir()} <= {".safetensors", ".json", ".yaml", ".bin", ".pkl"}
    assert not list(folder.glob("custom_checkpoint_*"))
    marker = tmp_path / "code-ran"
    torch.save(Payload(marker), folder / "custom_checkpoint_0.pkl")  # would run under register_for_checkpointing
    from sweettok.training.checkpoint import CheckpointError

    with caplog.at_level("WARNING"), pytest.raises(CheckpointError, match="no checkpoint .* can be resumed"):
        new_trainer(cfg, LeCamTask)
    assert not marker.exists()
    assert "custom_checkpoint_0.pkl: refused" in caplog.text
    (folder / "custom_checkpoint_0.pkl").unlink()
    resumed = new_trainer(cfg, LeCamTask)
    resumed.fit()
    for name in ("ema_real", "ema_fake"):
        assert torch.equal(getattr(resumed.task.lecam, name), getattr(straight.task.lecam, name))


@pytest.mark.parametrize("damage", ["rng_pickle", "optimizer_pickle", "truncated_model", "meta"])
def test_damaged_newest_checkpoint_is_named_and_the_previous_one_used(tmp_path, caplog, damage):
    cfg = make_cfg(tmp_path, "experiment.save_every=2", "training.max_train_steps=4")
    new_trainer(cfg).fit()
    newest, marker = tmp_path / "checkpoint-4", tmp_path / "code-ran"
    bad = {"rng_pickle": "random_states_0.pkl", "optimizer_pickle": "optimizer.bin",
           "truncated_model": "model.safetensors", "meta": "meta.json"}[damage]
    if damage.endswith("pickle"):
        torch.save(Payload(marker), newest / bad)
    else:
        data = (newest / bad).read_bytes()
        (newest / bad).write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING"):
        resumed = new_trainer(cfg)
    assert resumed.step == 2 and not marker.exists()
    assert f"cannot resume from {newest}" in caplog.text and bad in caplog.text
    assert "resumed from the older checkpoint-2" in caplog.text
    if damage.endswith("pickle"):
        assert "refused to unpickle" in caplog.text


def test_no_readable_checkpoint_says_what_to_do(tmp_path):
    from sweettok.training.checkpoint import CheckpointError

    cfg = make_cfg(tmp_path, "experiment.save_every=2", "training.max_train_steps=2")
    new_trainer(cfg).fit()
    path = tmp_path / "checkpoint-2" / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="delete or move the damaged checkpoint-\\* folders"):
        new_trainer(cfg)


def test_checkpoint_and_export_files_follow_the_umask(tmp_path):
    cfg = make_cfg(tmp_path, "experiment.save_every=2", "training.max_train_steps=2")
    new_trainer(cfg).fit()
    mask = os.umask(0)
    os.umask(mask)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".pkl", ".json")]
    assert any(p.name == "ema.safetensors" for p in files) and any(p.parent.name == "export" for p in files)
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path


def test_sigterm_saves_a_checkpoint_and_the_rerun_resumes_exactly(tmp_path):
    from sweettok.training.trainer import TrainingInterrupted

    straight = new_trainer(make_cfg(tmp_path / "a"))
    straight.fit()
    cfg = make_cfg(tmp_path / "b")
    before = signal.getsignal(signal.SIGTERM)
    first = new_trainer(cfg, sigterm_at=2)
    with pytest.raises(TrainingInterrupted, match="SIGTERM at step 3.*checkpoint-3"):
        first.fit()
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is restored
    assert [step for step, _ in list_checkpoints(tmp_path / "b")] == [3]
    resumed = new_trainer(cfg)
    assert resumed.step == 3
    resumed.fit()
    assert_same(snapshot(resumed), snapshot(straight))


def test_ctrl_c_saves_a_checkpoint_and_a_second_one_stops_at_once(tmp_path):
    from sweettok.training.trainer import TrainingInterrupted

    # an interactive process, where Ctrl-C raises KeyboardInterrupt (whatever an earlier test left installed)
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        straight = new_trainer(make_cfg(tmp_path / "a"))
        straight.fit()
        cfg = make_cfg(tmp_path / "b")
        with pytest.raises(TrainingInterrupted, match="SIGINT at step 3.*checkpoint-3"):
            new_trainer(cfg, sigint_at=2).fit()
        assert signal.getsignal(signal.SIGINT) == signal.default_int_handler  # as before, outside training
        assert [step for step, _ in list_checkpoints(tmp_path / "b")] == [3]
        resumed = new_trainer(cfg)
        assert resumed.step == 3
        resumed.fit()
        assert_same(snapshot(resumed), snapshot(straight))

        twice = make_cfg(tmp_path / "c")
        with pytest.raises(KeyboardInterrupt):
            new_trainer(twice, sigint_at=2, sigint_count=2).fit()
        assert list_checkpoints(tmp_path / "c") == []
        assert signal.getsignal(signal.SIGINT) == signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outside)


def test_fresh_start_moves_an_older_run_aside(tmp_path):
    """resume=false into a used folder: the old run is kept aside, the new one is never mixed with it."""
    out = tmp_path / "run"
    new_trainer(make_cfg(out, "experiment.save_every=2", "training.max_train_steps=6")).fit()
    fresh = make_cfg(out, "experiment.save_every=2", "training.max_train_steps=2", "experiment.resume=false",
                     "experiment.keep_last_checkpoints=1")
    new_trainer(fresh).fit()
    assert [step for step, _ in list_checkpoints(out)] == [2]  # not pruned away by the old run's 4 and 6
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.previous-")]
    assert len(aside) == 1 and [step for step, _ in list_checkpoints(aside[0])] == [2, 4, 6]
    assert (aside[0] / "export" / "model.safetensors").is_file()
    again = new_trainer(make_cfg(out, "experiment.save_every=2", "training.max_train_steps=2"))
    assert again.step == 2  # resumes the new run, not the old one


def test_two_runs_into_one_folder_are_refused(tmp_path):
    from sweettok.training.run_folder import OutputFolderBusyError, RunLock

    holder = RunLock(tmp_path)  # as another process training here would hold it
    with pytest.raises(OutputFolderBusyError, match=f"{tmp_path} is in use by a running training \\(host .* pid {os.getpid()}"):
        new_trainer(make_cfg(tmp_path))
    assert not (tmp_path / "config.yaml").exists()
    holder.release()
    new_trainer(make_cfg(tmp_path, "training.max_train_steps=1")).fit()  # free again; fit releases it
    new_trainer(make_cfg(tmp_path, "training.max_train_steps=2")).fit()


def test_resume_with_a_changed_config_refuses_what_cannot_apply(tmp_path, caplog):
    from sweettok.config import ConfigError

    new_trainer(make_cfg(tmp_path, "experiment.save_every=2", "training.max_train_steps=2")).fit()
    with pytest.raises(ConfigError, match=r"cannot resume from .*checkpoint-2.*optimizer.learning_rate: 0.01 -> 0.02"):
        new_trainer(make_cfg(tmp_path, "training.max_train_steps=4", "optimizer.learning_rate=2e-2"))
    with pytest.raises(ConfigError, match=r"training.per_gpu_batch_size: 4 -> 2 \(the data position"):
        new_trainer(make_cfg(tmp_path, "training.per_gpu_batch_size=2"))
    with caplog.at_level("WARNING"):
        resumed = new_trainer(make_cfg(tmp_path, "training.max_train_steps=4", "training.ema_decay=0.8"))
    assert resumed.step == 2
    assert "changed config" in caplog.text and "training.max_train_steps: 2 -> 4" in caplog.text
    assert "training.ema_decay: 0.9 -> 0.8" in caplog.text


def test_resume_from_a_config_saved_before_a_schema_field_was_added(tmp_path):
    """A checkpoint whose saved config lacks a newer field (here model.tokenizer.patch_input_norm) resumes."""
    new_trainer(make_cfg(tmp_path, "experiment.save_every=2", "training.max_train_steps=2")).fit()
    meta_path = tmp_path / "checkpoint-2" / "meta.json"
    meta = json.loads(meta_path.read_text())
    del meta["config"]["model"]["tokenizer"]["patch_input_norm"]
    meta_path.write_text(json.dumps(meta))
    assert new_trainer(make_cfg(tmp_path, "training.max_train_steps=4")).step == 2


def test_keep_last_checkpoints(tmp_path):
    cfg = make_cfg(tmp_path, "experiment.save_every=1", "training.max_train_steps=4",
                   "experiment.keep_last_checkpoints=2")
    new_trainer(cfg).fit()
    assert [step for step, _ in list_checkpoints(tmp_path)] == [3, 4]
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "train.log").is_file()


def test_nonfinite_loss_stops_with_a_checkpoint(tmp_path):
    trainer = new_trainer(make_cfg(tmp_path), nan_at=2)
    with pytest.raises(NonFiniteLossError, match=r"step 3: loss=nan.*checkpoint-3-nonfinite") as info:
        trainer.fit()
    assert info.value.step == 3
    folder = tmp_path / "checkpoint-3-nonfinite"
    assert read_meta(folder)["step"] == 2
    assert latest_checkpoint(tmp_path) is None  # never picked up by resume
    assert not (tmp_path / "export").exists()


def test_two_optimizers_gan_shaped_step(tmp_path):
    trainer = new_trainer(make_cfg(tmp_path, "training.max_train_steps=3", "experiment.save_every=3"), TwoOptimizerTask)
    trainer.fit()
    assert trainer.task.critic_grads_after_model_step == [False, False, False]  # frozen(): no grad into D
    for name in ("model", "critic"):
        states = trainer.task.optimizers[name].state_dict()["state"].values()
        assert all(int(s["step"]) == 3 for s in states)
    assert trainer.task.schedulers["model"].get_last_lr()[0] == pytest.approx(1e-2)  # warmup done at step 3
    assert {"optimizer.bin", "optimizer_1.bin", "model.safetensors", "model_1.safetensors"} <= {
        p.name for p in (tmp_path / "checkpoint-3").iterdir()}


def test_bf16_mixed_precision_on_cpu(tmp_path):
    trainer = new_trainer(make_cfg(tmp_path, "training.mixed_precision=bf16", "training.max_train_steps=2"))
    before = {k: v.clone() for k, v in trainer.task.unwrap("model").state_dict().items()}
    dtypes = []
    trainer.task.unwrap("model").head.register_forward_hook(lambda m, i, out: dtypes.append(out.dtype))
    trainer.fit()
    assert dtypes and set(dtypes) == {torch.bfloat16}  # the forward really ran under bf16 autocast
    after = trainer.task.unwrap("model").state_dict()
    assert trainer.accelerator.mixed_precision == "bf16"
    assert all(torch.isfinite(v).all() for v in after.values())
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_logged_keys_and_eval_hooks_use_ema(tmp_path):
    """Every log step has train/ lr/ grad_norm/ time/ throughput/ keys; eval/generate see EMA weights."""
    cfg = make_cfg(tmp_path, "training.max_train_steps=4", "experiment.eval_every=2", "experiment.generate_every=4",
                   "experiment.log_grad_norm_every=2")
    trainer = new_trainer(cfg)
    logged, hooks = {}, []
    trainer.accelerator.log = lambda values, step=None, **_: logged.setdefault(step, {}).update(values)

    def evaluate(step):
        model = trainer.task.unwrap("model")
        ema_in = all(torch.equal(p, trainer.ema.shadow[n]) for n, p in model.named_parameters())
        hooks.append(("eval", step, model.training, torch.is_grad_enabled(), ema_in))
        return {"psnr": 1.0}

    trainer.task.evaluate = evaluate
    trainer.task.generate = lambda step: hooks.append(("generate", step))
    trainer.fit()
    assert sorted(logged) == [1, 2, 3, 4]
    for step in (1, 2, 3, 4):
        assert {"train/loss", "lr/model", "grad_norm/model", "time/data", "time/batch",
                "throughput/samples_per_s"} <= set(logged[step])
    assert "grad_norm/model.proj_in" in logged[2] and "grad_norm/model.proj_in" not in logged[3]
    assert logged[2]["val/psnr"] == 1.0
    assert hooks == [("eval", 2, False, False, True), ("eval", 4, False, False, True), ("generate", 4)]
    assert trainer.task.unwrap("model").training  # train mode is back after the hooks
    records = [json.loads(line) for line in (trainer.output_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == [1, 2, 3, 4]
    assert [r["val/psnr"] for r in records if "val/psnr" in r] == [1.0, 1.0]


def test_video_panel_and_gif(tmp_path):
    from sweettok.training.media import save_video_panel, video_panel

    x = torch.rand(2, 3, 5, 8, 6) - 0.5  # (B, C, T, H, W) in [-0.5, 0.5]
    frames = video_panel(x, torch.zeros_like(x))
    assert frames.shape == (5, 16, 18, 3) and frames.dtype.name == "uint8"
    assert (frames[:, :, 6:12] == 128).all()  # the output column: zeros -> mid grey
    paths = save_video_panel(x, x, tmp_path, step=7, formats=("gif",))
    assert paths == [tmp_path / "samples" / "train_reconstruction_00000007.gif"] and paths[0].stat().st_size > 0
    from PIL import Image

    with Image.open(paths[0]) as gif:  # the panel's default 4 fps: 250 ms a frame (imageio's mimsave stored 0)
        assert gif.n_frames == 5 and gif.info["duration"] == 250


def test_lr_schedule_values():
    base, end = 1e-3, 1e-5
    assert lr_at(0, base, end, 10, 110) == pytest.approx(1e-4)
    assert lr_at(9, base, end, 10, 110) == pytest.approx(base)
    assert lr_at(10, base, end, 10, 110) == pytest.approx(base)
    assert lr_at(60, base, end, 10, 110) == pytest.approx((base + end) / 2)
    assert lr_at(110, base, end, 10, 110) == pytest.approx(end)
    assert lr_at(500, base, end, 10, 110) == pytest.approx(end)
    assert lr_at(50, base, end, 10, 110, name="constant") == base
    with pytest.raises(ValueError, match="lr_scheduler.name"):
        lr_at(0, base, end, 0, 10, name="linear")


def test_lr_counts_optimizer_steps_under_accumulation(tmp_path):
    """With accumulation 3 the scheduler still advances once per optimizer step."""
    trainer = new_trainer(make_cfg(tmp_path, "training.gradient_accumulation_steps=3", "training.max_train_steps=6"))
    trainer.fit()
    expected = {s: lr_at(s, 1e-2, 1e-4, 3, 6) for s in range(6)}
    assert trainer.task.lrs == pytest.approx(expected)


def test_weight_decay_groups():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Linear(3, 3)
            self.post_proj = nn.Linear(3, 3)  # "post" is not "pos": decayed
            self.norm1 = nn.LayerNorm(3)
            self.token_embedding = nn.Embedding(5, 3)
            self.queries = nn.Parameter(torch.zeros(4, 3))
            self.pos_embed = nn.Parameter(torch.zeros(4, 3))
            self.mask_token = nn.Parameter(torch.zeros(1, 3))
            self.frozen = nn.Linear(3, 3).requires_grad_(False)

    net = Net()
    decay, no_decay = param_groups(net, 0.05, to_dataclass(load_config().optimizer).no_weight_decay_keywords)
    names = {id(p): n for n, p in net.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["post_proj.weight", "proj.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "mask_token", "norm1.bias", "norm1.weight", "pos_embed", "post_proj.bias", "proj.bias", "queries",
        "token_embedding.weight",
    ]
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)


def test_ema_decay_and_swap():
    model = nn.Linear(2, 1)
    ema = EMA(model, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)  # (1+0)/(10+0)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], start + 0.9)
    live = model.weight.detach().clone()
    with ema.swap(model):
        assert torch.allclose(model.weight, start + 0.9)
    assert torch.equal(model.weight, live)
    ema.num_updates = 10**6
    assert ema.current_decay() == 0.999


def test_mistyped_override_fails_naming_the_key(capsys):
    main = runpy.run_path(str(ROOT / "scripts" / "train.py"))["main"]
    code = main([f"config={ROOT / 'configs/base/stage1.yaml'}", "training.max_train_stepz=3"])
    assert code == 2
    assert "training.max_train_stepz" in capsys.readouterr().err


def test_train_script_failures_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    """A missing dataset root, or a read-only output folder: `error: ...` on one line, exit 2; --debug re-raises."""
    import errno

    from sweettok.data.lists import DatasetError

    main = runpy.run_path(str(ROOT / "scripts" / "train.py"))["main"]
    args = [f"config={ROOT / 'configs/demo/proxy_train.yaml'}", f"experiment.output_dir={tmp_path / 'out'}",
            "experiment.logger=none", f"dataset.root={tmp_path / 'nowhere'}",
            f"dataset.train_list={tmp_path / 'list.txt'}"]
    (tmp_path / "list.txt").write_text("videos/a.mp4\t1\n")
    assert main(args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "check dataset.root" in lines[0] and "Traceback" not in err
    AcceleratorState._reset_state(True)
    with pytest.raises(DatasetError):
        main([*args, "--debug"])

    def read_only(cfg, path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    AcceleratorState._reset_state(True)
    monkeypatch.setitem(main.__globals__, "preflight", lambda cfg: None)  # past the data check, to the first write
    monkeypatch.setattr("sweettok.training.trainer.save_config", read_only)
    assert main(args) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: cannot write ") and "config.yaml" in line and "writable" in line


def test_train_script_dispatches_on_the_stage(tmp_path, monkeypatch, capsys):
    """scripts/train.py picks the registered task of experiment.train_stage and exports at the end."""
    from sweettok.training import registry

    monkeypatch.setitem(registry.TASKS, 1, f"{__name__}:RegressionTask")  # restored after the test
    AcceleratorState._reset_state(True)
    main = runpy.run_path(str(ROOT / "scripts" / "train.py"))["main"]
    overrides = [f"experiment.output_dir={tmp_path}", "experiment.logger=none", "training.max_train_steps=2",
                 "training.per_gpu_batch_size=4", "training.mixed_precision=no"]
    assert main([f"config={ROOT / 'configs/base/stage1.yaml'}", *overrides]) == 0
    assert "done: weights exported" in capsys.readouterr().out
    state, cfg = load_export(tmp_path / "export")
    assert set(state) == set(TinyMLP().state_dict()) and cfg.training.max_train_steps == 2


def test_missing_stage_says_not_implemented():
    from sweettok.training.registry import get_task_factory

    with pytest.raises(NotImplementedError, match="stage 7 is not implemented yet"):
        get_task_factory(7)


def test_two_processes_on_cpu(tmp_path):
    """accelerate launch with 2 CPU processes: 2 steps, the lr schedule in optimizer steps, an export."""
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           __file__, str(tmp_path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"report-{rank}.json").read_text()) for rank in (0, 1)]
    for report in reports:
        assert report["num_processes"] == 2 and report["step"] == 2
        assert report["lrs"] == pytest.approx([lr_at(s, 1e-2, 1e-4, 3, 2) for s in range(2)])
    assert not set(reports[0]["seen"]) & set(reports[1]["seen"])  # each rank its own samples
    assert reports[0]["head"] == reports[1]["head"]  # gradients were averaged: same weights
    assert (tmp_path / "export" / "model.safetensors").is_file()
    assert [step for step, _ in list_checkpoints(tmp_path)] == [2]


def _two_process_worker(out: str) -> None:
    cfg = make_cfg(Path(out), "training.max_train_steps=2", "experiment.save_every=2")
    trainer = Trainer(cfg, RegressionTask)
    trainer.fit()  # ends with end_training(), which closes the process group: report per rank
    report = {"num_processes": trainer.accelerator.num_processes, "step": trainer.step,
              "lrs": [trainer.task.lrs[s] for s in sorted(trainer.task.lrs)],
              "seen": sum(trainer.task.seen, []), "head": trainer.task.unwrap("model").head.weight.tolist()}
    (Path(out) / f"report-{trainer.accelerator.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    _two_process_worker(sys.argv[1])
