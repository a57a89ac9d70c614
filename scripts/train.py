"""Train one stage of the pipeline: python scripts/train.py config=configs/<dataset>/<stage>.yaml [key=value ...]

The stage is ``experiment.train_stage`` (0 proxy tokenizer, 1 proxy codes, 2 pixel decoder,
3 generator); multi-GPU: ``accelerate launch --multi_gpu --num_processes N scripts/train.py ...``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from sweettok.config import ConfigError, load_config_from_cli, parse_cli
from sweettok.training.checkpoint import EXPORT_WEIGHTS, latest_checkpoint, read_meta
from sweettok.training.preflight import PREFLIGHT_ERRORS, preflight
from sweettok.training.registry import get_task_factory
from sweettok.training.task import NonFiniteLossError
from sweettok.training.trainer import Trainer

USAGE = """usage: python scripts/train.py config=<yaml> [key=value ...] [--print-config] [--check-only]

Train one stage of SweetTok; the stage is the config's experiment.train_stage (0 proxy tokenizer,
1 proxy codes, 2 pixel decoder, 3 generator). Multi-GPU: accelerate launch --multi_gpu
--num_processes N scripts/train.py ... (the run_train_*.sh launchers do it for you).

  config=PATH      the YAML (configs/<dataset>/<stage>.yaml); its bases: are merged first
  key=value        config overrides, e.g. training.max_train_steps=100 experiment.output_dir=outputs/x
  --print-config   print the resolved config (every key with its value) and exit
  --check-only     check the config, the weights it starts from, the priors and the data; train nothing
  -h, --help       this text

Every key is in the dataclass schema of sweettok/config.py; list them with
  python scripts/train.py config=configs/demo/stage1.yaml --print-config
A mistyped key fails at once, naming it (and the closest schema key). A run resumes from the newest
checkpoint in experiment.output_dir; a finished run says so and exits (experiment.resume=false
starts over).
Exit status: 0 done, 1 non-finite loss, 2 config / file / data problem."""

FLAGS = ("--print-config", "--check-only")


def split_flags(argv: list[str]) -> tuple[set[str], list[str]]:
    """(the --flags of FLAGS given, the remaining config arguments); an unknown --flag is a ConfigError."""
    flags, rest = set(), []
    for arg in argv:
        if arg in FLAGS:
            flags.add(arg)
        elif arg.startswith("--") and not arg.startswith("--config="):
            raise ConfigError(f"command line: unknown option '{arg}' (options: {', '.join(FLAGS)}, --help)")
        else:
            rest.append(arg)
    return flags, rest


def run_preflight(cfg: DictConfig) -> Optional[int]:
    """The checks of sweettok.training.preflight; print one line and return 2 when one fails."""
    try:
        preflight(cfg)
    except PREFLIGHT_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return None


def finished_run(cfg: DictConfig) -> Optional[str]:
    """A line saying the run is done when its newest checkpoint reached max_train_steps and the export exists."""
    output_dir = Path(cfg.experiment.output_dir)
    folder = latest_checkpoint(output_dir) if cfg.experiment.resume else None
    if folder is None or not (output_dir / "export" / EXPORT_WEIGHTS).is_file():
        return None
    step = read_meta(folder).get("step", 0)
    if step < cfg.training.max_train_steps:
        return None
    return (f"done already: {output_dir} reached step {step} (training.max_train_steps="
            f"{cfg.training.max_train_steps}); weights in {output_dir / 'export'}. To train again pass "
            "experiment.resume=false or a new experiment.output_dir; for more steps raise training.max_train_steps")


def is_rank_zero() -> bool:
    """True in the first process of a launch (or without one): the process that speaks for the run."""
    return os.environ.get("RANK", "0") == "0"


def announce(argv: list[str], cfg: DictConfig) -> None:
    """Say (once, on rank 0) which config runs and where its outputs go."""
    if is_rank_zero():
        path, overrides = parse_cli(argv)
        extra = f" + {len(overrides)} override(s)" if overrides else ""
        print(f"[sweettok] stage {cfg.experiment.train_stage}: config {path}{extra}; output {cfg.experiment.output_dir}",
              flush=True)


def before_training(argv: list[str], flags: set[str], cfg: DictConfig) -> Optional[int]:
    """--print-config / --check-only / a finished run: the exit status; else announce, check, None (train)."""
    if "--print-config" in flags:
        print(OmegaConf.to_yaml(cfg, resolve=True), end="")
        return 0
    if "--check-only" in flags:
        status = run_preflight(cfg)
        if status is None:
            print(f"ok: {cfg.experiment.output_dir} can start (config, weights, priors and data checked)")
        return status or 0
    done = finished_run(cfg)
    if done:
        if is_rank_zero():
            print(done)
        return 0
    announce(argv, cfg)
    return run_preflight(cfg)


def main(argv: Optional[list[str]] = None) -> int:
    """Load the config, pick the stage's task, train; exit 2 on a config problem, 1 on a NaN loss."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0
    try:
        flags, argv = split_flags(argv)
        cfg = load_config_from_cli(argv)
        task_factory = get_task_factory(cfg.experiment.train_stage)
    except (ConfigError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    status = before_training(argv, flags, cfg)
    if status is not None:
        return status
    try:
        export_dir = Trainer(cfg, task_factory).fit()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except NonFiniteLossError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"done: weights exported to {export_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
