"""The wandb side of a run (the user's WANDB_MODE, the run id kept and resumed) and quiet checkpoint saves."""

from __future__ import annotations

import logging

import pytest

from test_training import make_cfg, new_trainer
from sweettok.training.checkpoint import latest_checkpoint, read_meta
from sweettok.training.logs import new_run_id, resolve_wandb_mode, tracker_init_kwargs, wandb_logged_in


@pytest.fixture
def no_wandb_login(tmp_path, monkeypatch):
    """No API key in the environment and an empty .netrc: a user who never ran `wandb login`."""
    for key in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login me password secret\n")
    monkeypatch.setenv("NETRC", str(netrc))
    return netrc


def test_unset_mode_is_offline_without_a_login(no_wandb_login):
    assert not wandb_logged_in()
    assert resolve_wandb_mode() == "offline"
    assert __import__("os").environ["WANDB_MODE"] == "offline"  # what wandb.init will read


def test_unset_mode_is_online_for_a_logged_in_user(no_wandb_login, monkeypatch):
    no_wandb_login.write_text("machine api.wandb.ai\n  login user\n  password 0123456789abcdef\n")  # `wandb login`
    assert wandb_logged_in() and resolve_wandb_mode() == "online"
    monkeypatch.delenv("WANDB_MODE")
    no_wandb_login.write_text("")
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef")
    assert resolve_wandb_mode() == "online"


@pytest.mark.parametrize("mode", ["online", "offline", "disabled"])
def test_the_users_mode_is_never_overridden(no_wandb_login, monkeypatch, mode):
    monkeypatch.setenv("WANDB_MODE", mode)
    assert resolve_wandb_mode() == mode  # even "online" without a login: the user asked for it


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")  # tests/conftest.py


def test_run_id_is_stored_in_the_checkpoint_and_a_resume_continues_that_run(tmp_path, monkeypatch):
    cfg = make_cfg(tmp_path, "training.max_train_steps=2", "experiment.save_every=2")
    first = new_trainer(cfg)
    first.fit()
    meta = read_meta(latest_checkpoint(tmp_path))
    assert meta["run_id"] == first.run_id and len(first.run_id) == 8
    resumed = new_trainer(make_cfg(tmp_path, "training.max_train_steps=3", "experiment.logger=wandb"))
    assert resumed.step == 2 and resumed.run_id == first.run_id
    calls = []
    monkeypatch.setattr(resumed.accelerator, "init_trackers", lambda *args, **kwargs: calls.append(kwargs))
    resumed._init_trackers()
    assert calls[0]["init_kwargs"]["wandb"]["id"] == first.run_id
    assert calls[0]["init_kwargs"]["wandb"]["resume"] == "allow"
    assert new_trainer(make_cfg(tmp_path / "other")).run_id != first.run_id  # a new run, a new id


def test_tracker_kwargs_and_fresh_ids(monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    with caplog.at_level(logging.INFO):
        kwargs = tracker_init_kwargs("wandb", "demo", "outputs/x", "abcd1234")
    assert kwargs == {"wandb": {"name": "demo", "dir": "outputs/x", "id": "abcd1234", "resume": "allow"}}
    assert "wandb run abcd1234, mode offline (upload it later: wandb sync outputs/x/wandb/offline-run-*)" in caplog.text
    ids = {new_run_id() for _ in range(20)}
    assert len(ids) == 20 and all(len(i) == 8 and set(i) <= set("abcdefghijklmnopqrstuvwxyz0123456789") for i in ids)


def test_a_checkpoint_save_logs_one_line_not_accelerates_info(tmp_path, caplog):
    trainer = new_trainer(make_cfg(tmp_path, "training.max_train_steps=1"))
    with caplog.at_level(logging.INFO):
        trainer.save()
    ours = [r for r in caplog.records if r.name.startswith("sweettok")]
    accelerate_info = [r for r in caplog.records if r.name.startswith("accelerate") and r.levelno < logging.WARNING]
    assert any(r.getMessage().startswith("saved ") for r in ours)
    assert accelerate_info == []


def test_log_lines_do_not_run_into_a_progress_bar(tmp_path):
    """A line logged while a tqdm bar is drawn on the same stream starts on its own line (tqdm.write)."""
    import io
    import logging
    import re

    from tqdm import tqdm

    from sweettok.training.logs import setup_logging

    stream = io.StringIO()
    root = logging.getLogger()
    old_handlers, old_level = list(root.handlers), root.level
    try:
        setup_logging(tmp_path)
        ours = [h for h in root.handlers if getattr(h, "_sweettok_handler", False) and not isinstance(h, logging.FileHandler)]
        assert len(ours) == 1
        ours[0].setStream(stream)
        bar = tqdm(total=10, file=stream, desc="train", mininterval=0)
        bar.update(3)
        logging.getLogger("sweettok.test").warning("Ctrl-C: saving a checkpoint")
        bar.close()
    finally:
        for handler in list(root.handlers):
            if handler not in old_handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(old_level)
    text = stream.getvalue()
    before = text[: re.search(r"\d\d:\d\d:\d\d WARNING sweettok.test: Ctrl-C", text).start()]
    assert "train:" in before  # the bar was drawn first
    # the bar was erased first ("\r", blanks, "\r"): the line starts at column 0, not after the bar's text
    segments = before.rsplit("\n", 1)[-1].split("\r")
    assert segments[-1].strip(" ") == "" and "train:" not in segments[-2]
    assert (tmp_path / "train.log").read_text().count("Ctrl-C: saving") == 1
