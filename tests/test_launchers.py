"""Launchers and scripts/train.py through subprocess: --help, CONFIG honoured, one check before launching.

Nothing trains here: --print-config / --check-only, or a run that its checks stop, or a refused
NUM_GPUS. The finished-run test trains a test-only task for 2 steps in-process.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.state import AcceleratorState

from sweettok.config import load_config

ROOT = Path(__file__).resolve().parents[1]
TRAIN_LAUNCHERS = ["run_train_proxy.sh", "run_train_stage1.sh", "run_train_stage2.sh", "run_train_generator.sh"]
EVAL_LAUNCHERS = {"run_eval.sh": "scripts/eval_tokenizer.py", "run_eval_gen.sh": "scripts/sample.py"}
UCF_STAGE1 = "configs/ucf101/stage1.yaml"
MISSING_PROXY = "/nonexistent/sweettok/proxy.ckpt"


def launcher(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run a launcher with this interpreter and a quiet wandb; ``env`` adds environment variables."""
    full_env = {**os.environ, "PYTHON": sys.executable, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", **env}
    for key in ("ACCELERATE_CONFIG", "NUM_GPUS", "CONFIG"):
        if key not in env:
            full_env.pop(key, None)
    return subprocess.run(["bash", str(ROOT / name), *args], capture_output=True, text=True, timeout=120, env=full_env)


def train_script(*args: str) -> subprocess.CompletedProcess:
    """``python scripts/train.py ARGS`` from the repository root."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"})


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not the launchers' "[sweettok] ..." progress notes."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("[sweettok] no GPU")
            and not line.startswith("[sweettok] stage")]


@pytest.mark.parametrize("name", TRAIN_LAUNCHERS + list(EVAL_LAUNCHERS))
def test_launcher_help_says_what_it_runs_its_environment_and_config(name):
    result = launcher(name, "--help")
    assert result.returncode == 0, result.stderr
    header = (ROOT / name).read_text().splitlines()[1].lstrip("# ")
    assert result.stdout.startswith(header)  # what it runs: the launcher's own header comment
    for variable in ("CONFIG", "NUM_GPUS", "NUM_MACHINES", "ACCELERATE_CONFIG", "WANDB_MODE"):
        assert f"\n  {variable} " in result.stdout, variable
    if name in TRAIN_LAUNCHERS:
        assert "--print-config" in result.stdout and "--check-only" in result.stdout
        assert "sweettok/config.py" in result.stdout
    else:
        assert f"{EVAL_LAUNCHERS[name]} --help" in result.stdout


def test_train_script_help():
    result = train_script("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python scripts/train.py config=<yaml>")
    for text in ("--print-config", "--check-only", "sweettok/config.py", "experiment.train_stage"):
        assert text in result.stdout


def train_main(*args: str) -> int:
    """scripts/train.py's main in this process (fast: the imports are shared)."""
    return runpy.run_path(str(ROOT / "scripts" / "train.py"))["main"](list(args))


def test_train_script_print_config_is_the_resolved_config(capsys):
    assert train_main(f"config={ROOT / UCF_STAGE1}", "training.max_train_steps=7", "--print-config") == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["training"]["max_train_steps"] == 7
    assert printed["experiment"]["output_dir"] == load_config(ROOT / UCF_STAGE1).experiment.output_dir
    assert set(printed) == set(load_config(None))  # every section of the schema


def test_train_script_refuses_an_unknown_option(capsys):
    assert train_main(f"config={ROOT / UCF_STAGE1}", "--print-configg") == 2
    assert capsys.readouterr().err.strip() == ("error: command line: unknown option '--print-configg' "
                                               "(options: --print-config, --check-only, --help)")


def test_explicit_config_is_honoured_on_cpu():
    result = launcher("run_train_stage1.sh", "--print-config", CONFIG=UCF_STAGE1, NUM_GPUS="0")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    ucf, demo = load_config(ROOT / UCF_STAGE1), load_config(ROOT / "configs/demo/stage1.yaml")
    assert printed["experiment"]["output_dir"] == ucf.experiment.output_dir != demo.experiment.output_dir
    assert printed["dataset"]["root"] == ucf.dataset.root
    assert "demo data missing" not in result.stdout and "configs/demo" not in result.stderr


def test_explicit_config_on_cpu_runs_that_config_and_stops_at_its_first_missing_file():
    result = launcher("run_train_stage1.sh", f"model.proxy.weights={MISSING_PROXY}", CONFIG=UCF_STAGE1, NUM_GPUS="0")
    assert result.returncode == 2
    assert f"[sweettok] stage 1: config {UCF_STAGE1} + 1 override(s); output outputs/ucf101_stage1" in result.stdout
    assert error_lines(result.stderr) == [error_lines(result.stderr)[0]]  # one line, no traceback
    assert error_lines(result.stderr)[0].startswith(f"error: model.proxy.weights: {MISSING_PROXY} not found")
    checked = launcher("run_train_stage1.sh", "--check-only", f"model.proxy.weights={MISSING_PROXY}",
                       CONFIG=UCF_STAGE1, NUM_GPUS="0")
    assert checked.returncode == 2 and error_lines(checked.stderr) == error_lines(result.stderr)


def test_more_gpus_than_visible_are_refused():
    result = launcher("run_train_stage1.sh", NUM_GPUS="64")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "NUM_GPUS=64" in result.stderr
    assert "[sweettok] stage" not in result.stdout  # nothing started
    result = launcher("run_train_stage1.sh", NUM_GPUS="two")
    assert result.returncode == 2 and "NUM_GPUS='two' is not a whole number" in result.stderr


def test_multi_process_path_checks_once_before_accelerate_launch(tmp_path):
    """ACCELERATE_CONFIG takes the accelerate path on any machine; the check stops the run first (the
    accelerate config file does not even exist: accelerate never starts)."""
    accelerate = {"ACCELERATE_CONFIG": str(tmp_path / "accelerate.yaml"), "CONFIG": UCF_STAGE1, "NUM_GPUS": "0"}
    result = launcher("run_train_stage1.sh", f"model.proxy.weights={MISSING_PROXY}", **accelerate)
    assert result.returncode == 2
    assert len(error_lines(result.stderr)) == 1, result.stderr
    assert error_lines(result.stderr)[0].startswith(f"error: model.proxy.weights: {MISSING_PROXY} not found")
    assert "Traceback" not in result.stderr and "accelerate" not in result.stderr.lower()
    result = launcher("run_train_stage1.sh", "training.max_train_stepz=1", **accelerate)
    assert result.returncode != 0
    assert error_lines(result.stderr) == [
        "error: command line: bad config key 'training.max_train_stepz': Key 'max_train_stepz' not in "
        "'TrainingConfig' (did you mean 'training.max_train_steps'?)"]


@pytest.fixture
def video_folder(tmp_path) -> list[str]:
    """Overrides pointing the demo proxy config at a folder layout of (empty) video files: enough for
    the checks, which look at the lists and the files' presence, not their frames."""
    for split, count in (("train", 3), ("test", 1)):
        folder = tmp_path / "videos" / split / "WalkLeft"
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"clip{i}.mp4").touch()
    return [f"dataset.root={tmp_path / 'videos'}", "dataset.train_list=", "dataset.eval_list=",
            "dataset.list_format=folder", "training.per_gpu_batch_size=2", f"experiment.output_dir={tmp_path / 'out'}"]


def test_check_only_passes_when_everything_is_there_and_trains_nothing(video_folder, tmp_path, capsys):
    assert train_main(f"config={ROOT / 'configs/demo/proxy_train.yaml'}", *video_folder, "--check-only") == 0
    assert capsys.readouterr().out.startswith(f"ok: {tmp_path / 'out'} can start")
    assert not (tmp_path / "out").exists()


def test_no_data_is_one_line_before_any_model_is_built(video_folder, tmp_path, capsys):
    args = [f"config={ROOT / 'configs/demo/proxy_train.yaml'}", *video_folder, "training.per_gpu_batch_size=8"]
    expected = "error: the train split has 3 clips, fewer than one batch (training.per_gpu_batch_size=8)"
    assert train_main(*args, "--check-only") == 2
    assert capsys.readouterr().err.strip() == expected
    result = train_script(*args)  # the training path itself, as a user runs it
    assert result.returncode == 2 and result.stderr.strip() == expected
    assert not (tmp_path / "out").exists()  # the trainer (which writes out/config.yaml first) never started


@pytest.mark.parametrize("config, overrides, expected", [
    ("demo/stage2.yaml", ["experiment.init_weight="], "error: experiment.init_weight is empty: stage 2 starts from"),
    ("demo/stage2.yaml", ["experiment.init_weight={tmp}/nothing"], "error: experiment.init_weight: {tmp}/nothing not found"),
    ("demo/stage1.yaml", ["model.proxy.weights={tmp}", "model.tokenizer.spatial_quantizer.prior={tmp}/no_prior"],
     "error: MLC prior {tmp}/no_prior not found"),
    ("demo/stage1.yaml", ["model.proxy.weights="], "error: model.proxy.weights is empty: stage 1 needs the proxy"),
    ("demo/generator_train.yaml", ["dataset.index_dir={tmp}/indices"], "error: index folder {tmp}/indices not found"),
])
def test_check_only_names_the_first_missing_input_of_each_stage(tmp_path, capsys, config, overrides, expected):
    overrides = [o.format(tmp=tmp_path) for o in overrides]
    assert train_main(f"config={ROOT / 'configs' / config}", *overrides, "--check-only") == 2
    err = capsys.readouterr().err
    assert err.startswith(expected.format(tmp=tmp_path)) and len(err.strip().splitlines()) == 1


def test_a_finished_run_says_it_is_done_instead_of_exporting_again(tmp_path, monkeypatch, capsys, fresh_accelerate_state):
    from test_training import RegressionTask

    from sweettok.training import registry

    monkeypatch.setitem(registry.TASKS, 1, f"{RegressionTask.__module__}:RegressionTask")
    main = runpy.run_path(str(ROOT / "scripts" / "train.py"))["main"]
    args = [f"config={ROOT / 'configs/base/stage1.yaml'}", f"experiment.output_dir={tmp_path}", "experiment.logger=none",
            "training.max_train_steps=2", "training.per_gpu_batch_size=4"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert f"; output {tmp_path}" in first and "done: weights exported" in first
    exported = (tmp_path / "export" / "model.safetensors").stat().st_mtime_ns
    AcceleratorState._reset_state(True)
    assert main(args) == 0
    again = capsys.readouterr().out
    assert again.startswith(f"done already: {tmp_path} reached step 2 (training.max_train_steps=2)")
    assert "done: weights exported" not in again
    assert (tmp_path / "export" / "model.safetensors").stat().st_mtime_ns == exported
