"""Config schema, YAML inheritance, CLI overrides and their errors."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sweettok.config import (
    ConfigError,
    ProxyConfig,
    load_config,
    load_config_from_cli,
    parse_cli,
    save_config,
    to_dataclass,
)

REPO = Path(__file__).resolve().parents[1]
ALL_YAML = sorted((REPO / "configs").rglob("*.yaml"))


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_are_the_paper_architecture():
    cfg = load_config()
    assert cfg.model.tokenizer.num_spatial_queries == 256
    assert cfg.model.tokenizer.num_temporal_queries == 1024
    assert cfg.model.proxy.codebook_size == 8192


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_in_configs_loads(path):
    cfg = load_config(path)
    assert cfg.dataset.num_frames > 0


def test_bases_merge_in_order_then_the_file(tmp_path):
    _write(tmp_path / "a.yaml", "training: {max_train_steps: 1, per_gpu_batch_size: 3}\n")
    _write(tmp_path / "sub/b.yaml", "bases: [../a.yaml]\ntraining: {max_train_steps: 2}\n")
    top = _write(tmp_path / "sub/c.yaml", "bases: [b.yaml]\noptimizer: {learning_rate: 0.5}\n")
    cfg = load_config(top)
    assert cfg.training.max_train_steps == 2  # b overrides a
    assert cfg.training.per_gpu_batch_size == 3  # inherited from a
    assert cfg.optimizer.learning_rate == 0.5


def test_cli_overrides_win(tmp_path):
    top = _write(tmp_path / "c.yaml", "training: {max_train_steps: 2}\n")
    cfg = load_config_from_cli([f"config={top}", "training.max_train_steps=7", "dataset.root=x"])
    assert cfg.training.max_train_steps == 7
    assert cfg.dataset.root == "x"


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    bad = _write(tmp_path / "bad.yaml", "training: {max_train_stepz: 2}\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert "max_train_stepz" in str(err.value)
    assert "bad.yaml" in str(err.value)


def test_unknown_key_in_base_names_the_base(tmp_path):
    _write(tmp_path / "base.yaml", "modle: {}\n")
    top = _write(tmp_path / "top.yaml", "bases: [base.yaml]\n")
    with pytest.raises(ConfigError, match=r"base\.yaml.*modle"):
        load_config(top)


def test_mistyped_override_fails_naming_key():
    with pytest.raises(ConfigError, match="command line.*training.max_train_stepz"):
        load_config(None, ["training.max_train_stepz=3"])
    with pytest.raises(ConfigError, match="training.max_train_steps"):
        load_config(None, ["training.max_train_steps=many"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["training.max_train_steps"])


def test_missing_file_and_circular_bases(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    _write(tmp_path / "x.yaml", "bases: [y.yaml]\n")
    _write(tmp_path / "y.yaml", "bases: [x.yaml]\n")
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "x.yaml")


def test_no_config_given_is_a_clear_error():
    with pytest.raises(ConfigError, match="config="):
        load_config_from_cli([])


def test_parse_cli_splits_path_and_overrides():
    assert parse_cli(["config=a.yaml", "x.y=1"]) == ("a.yaml", ["x.y=1"])


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(None, ["training.max_train_steps=11", "model.proxy.width=64"])
    save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(tmp_path / "run" / "config.yaml")
    assert OmegaConf.to_container(again) == OmegaConf.to_container(cfg)


def test_sections_become_dataclasses():
    cfg = load_config(None, ["model.proxy.width=64"])
    proxy = to_dataclass(cfg.model.proxy)
    assert isinstance(proxy, ProxyConfig) and proxy.width == 64


def test_yaml_no_stays_a_string_in_files_and_overrides(tmp_path):
    """YAML 1.1 reads `no` as false; mixed_precision must keep the word."""
    top = _write(tmp_path / "c.yaml", "training: {mixed_precision: no, use_ema: false}\n")
    assert load_config(top).training.mixed_precision == "no"
    assert load_config(top).training.use_ema is False
    cfg = load_config(None, ["training.mixed_precision=no", "training.use_ema=False", "optimizer.beta2=0.95"])
    assert cfg.training.mixed_precision == "no" and cfg.training.use_ema is False
    assert cfg.optimizer.beta2 == 0.95


@pytest.mark.parametrize("key, bad", [("dataset.short_video", "pad"), ("lr_scheduler.name", "linear"),
                                      ("dataset.resize_mode", "fit"), ("dataset.list_format", "csv"),
                                      ("dataset.video_backend", "opencv")])
def test_enum_values_fail_at_load_naming_key_and_choices(tmp_path, key, bad):
    with pytest.raises(ConfigError, match=f"{key} must be one of .*; got '{bad}'"):
        load_config(None, [f"{key}={bad}"])
    section, name = key.split(".")
    path = tmp_path / "c.yaml"
    path.write_text(f"{section}:\n  {name}: {bad}\n")
    with pytest.raises(ConfigError, match=key):
        load_config(path)


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("training:\n  max_train_steps: 3\n  per_gpu_batch_size: [1, 2\nmodel: {}\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:4:\d+: YAML syntax error: ") as info:
        load_config(path)
    assert "\n" not in str(info.value)
    tabbed = tmp_path / "tabbed.yaml"
    tabbed.write_text("training:\n\tmax_train_steps: 3\n")
    with pytest.raises(ConfigError, match=r"tabbed\.yaml:2:1: YAML syntax error"):
        load_config(tabbed)


def test_quantizer_loss_placement_fails_at_load():
    with pytest.raises(ConfigError, match=r"model.tokenizer.temporal_quantizer.loss_placement must be one of "
                                          r"standard, legacy; got 'encoder'"):
        load_config(None, ["model.tokenizer.temporal_quantizer.loss_placement=encoder"])


@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_ucf101_proxy_comment_gives_the_settings_its_stages_need(stage):
    """configs/ucf101/proxy.yaml tells how to point stage 1/2 at it; those overrides build the same proxy."""
    from sweettok.models.proxy_convert import TRAINING_ONLY_FIELDS

    comment = [line for line in (REPO / "configs/ucf101/proxy.yaml").read_text().splitlines()
               if line.startswith("#") and "model.proxy.weights=" in line]
    overrides = comment[0].lstrip("# ").split()
    trained = load_config(REPO / "configs/ucf101/proxy.yaml").model.proxy
    used = load_config(REPO / f"configs/ucf101/{stage}.yaml", overrides).model.proxy
    assert used.weights == "outputs/ucf101_proxy/export"
    assert {k: (trained[k], used[k]) for k in trained if k not in TRAINING_ONLY_FIELDS and trained[k] != used[k]} == {}
