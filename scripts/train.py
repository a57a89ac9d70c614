"""Train one stage of the pipeline: python scripts/train.py config=configs/<dataset>/<stage>.yaml [key=value ...]

The stage is ``experiment.train_stage`` (0 proxy tokenizer, 1 proxy codes, 2 pixel decoder,
3 generator); multi-GPU: ``accelerate launch --multi_gpu --num_processes N scripts/train.py ...``.
Any failure prints one line ``error: ...`` to stderr and exits 2 (1 for a non-finite loss); pass
``--debug`` (or set ``SWEETTOK_DEBUG=1``) to get the traceback instead. SIGTERM saves a checkpoint
and exits 143 (128 + SIGTERM); the same command resumes.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from sweettok.config import ConfigError, load_config_from_cli, parse_cli
from sweettok.errors import first_line
from sweettok.training.checkpoint import EXPORT_WEIGHTS, latest_checkpoint, read_meta
from sweettok.training.preflight import preflight
from sweettok.training.registry import get_task_factory
from sweettok.training.task import NonFiniteLossError
from sweettok.training.trainer import Trainer, TrainingInterrupted

DEBUG_FLAG = "--debug"
DEBUG_ENV = "SWEETTOK_DEBUG"
SIGTERM_EXIT = 143
SIGINT_EXIT = 130
DISK_HINTS = {
    errno.EROFS: "the file system is read-only: set experiment.output_dir to a writable folder",
    errno.EACCES: "no permission: set experiment.output_dir to a folder you can write",
    errno.ENOSPC: "the disk is full: free space or set experiment.output_dir on another disk",
    errno.EDQUOT: "the disk quota is exceeded: free space or set experiment.output_dir on another disk",
}

USAGE = """usage: python scripts/train.py config=<yaml> [key=value ...] [--print-config] [--check-only] [--debug]

Train one stage of SweetTok; the stage is the config's experiment.train_stage (0 proxy tokenizer,
1 proxy codes, 2 pixel decoder, 3 generator). Multi-GPU: accelerate launch --multi_gpu
--num_processes N scripts/train.py ... (the run_train_*.sh launchers do it for you).

  config=PATH      the YAML (configs/<dataset>/<stage>.yaml); its bases: are merged first
  key=value        config overrides, e.g. training.max_train_steps=100 experiment.output_dir=outputs/x
  --print-config   print the resolved config (every key with its value) and exit
  --check-only     check the config, the weights it starts from, the priors and the data; train nothing
  --debug          on failure, the full traceback instead of one line (or SWEETTOK_DEBUG=1)
  -h, --help       this text

Every key is in the dataclass schema of sweettok/config.py; list them with
  python scripts/train.py config=configs/demo/stage1.yaml --print-config
A mistyped key fails at once, naming it (and the closest schema key). A run resumes from the newest
checkpoint in experiment.output_dir; a finished run says so and exits (experiment.resume=false
starts over).
Exit status: 0 done, 1 non-finite loss, 2 config / file / data problem, 143 stopped by SIGTERM
(a checkpoint was saved: the same command resumes)."""

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
        preflight(cfg)  # a failure is one `error:` line in main (or the traceback with --debug)
        print(f"ok: {cfg.experiment.output_dir} can start (config, weights, priors and data checked)")
        return 0
    done = finished_run(cfg)
    if done:
        if is_rank_zero():
            print(done)
        return 0
    announce(argv, cfg)
    preflight(cfg)
    return None


def describe_error(err: BaseException) -> str:
    """One line for the user: the message, the file an OS error names, and what to do."""
    first = first_line(err)
    if isinstance(err, OSError) and err.errno in DISK_HINTS:
        return f"cannot write {err.filename or 'the output'}: {err.strerror}; {DISK_HINTS[err.errno]}"
    if isinstance(err, FileNotFoundError) and err.filename and first.startswith("[Errno"):
        return f"{err.filename} not found (relative to {os.getcwd()})"
    if type(err).__module__.startswith("sweettok") or isinstance(err, (FileNotFoundError, ValueError, KeyError)):
        return first
    return f"{type(err).__name__}: {first}"


def train(argv: list[str], flags: set[str]) -> int:
    """Load the config, pick the stage's task, check (or print) it, train and export."""
    cfg = load_config_from_cli(argv)
    task_factory = get_task_factory(cfg.experiment.train_stage)
    status = before_training(argv, flags, cfg)
    if status is not None:
        return status
    export_dir = Trainer(cfg, task_factory).fit()
    print(f"done: weights exported to {export_dir}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """Train; on failure print ``error: ...`` and return 2 (1 on a NaN loss), or raise with ``--debug``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "-h" in argv or "--help" in argv:
        print(USAGE)
        return 0
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    try:
        flags, argv = split_flags(argv)
        return train(argv, flags)
    except TrainingInterrupted as err:
        print(f"stopped: {err}", file=sys.stderr)
        return SIGINT_EXIT if err.signal_name == "SIGINT" else SIGTERM_EXIT
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training started
        print("stopped by Ctrl-C: the steps since the last checkpoint were not saved (a rerun resumes from that "
              "checkpoint, if there is one)", file=sys.stderr)
        return SIGINT_EXIT
    except Exception as err:  # noqa: BLE001 - every failure becomes one line unless debugging
        if debug:
            raise
        print(f"error: {describe_error(err)}", file=sys.stderr)
        return 1 if isinstance(err, NonFiniteLossError) else 2


if __name__ == "__main__":
    sys.exit(main())
