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
from typing import Optional

from sweettok.config import load_config_from_cli
from sweettok.training.registry import get_task_factory
from sweettok.training.task import NonFiniteLossError
from sweettok.training.trainer import Trainer, TrainingInterrupted

DEBUG_FLAG = "--debug"
DEBUG_ENV = "SWEETTOK_DEBUG"
SIGTERM_EXIT = 143
DISK_HINTS = {
    errno.EROFS: "the file system is read-only: set experiment.output_dir to a writable folder",
    errno.EACCES: "no permission: set experiment.output_dir to a folder you can write",
    errno.ENOSPC: "the disk is full: free space or set experiment.output_dir on another disk",
    errno.EDQUOT: "the disk quota is exceeded: free space or set experiment.output_dir on another disk",
}


def describe_error(err: BaseException) -> str:
    """One line for the user: the message, the file an OS error names, and what to do."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if isinstance(err, OSError) and err.errno in DISK_HINTS:
        return f"cannot write {err.filename or 'the output'}: {err.strerror}; {DISK_HINTS[err.errno]}"
    if isinstance(err, FileNotFoundError) and err.filename and first.startswith("[Errno"):
        return f"{err.filename} not found (relative to {os.getcwd()})"
    if type(err).__module__.startswith("sweettok") or isinstance(err, (FileNotFoundError, ValueError, KeyError)):
        return first
    return f"{type(err).__name__}: {first}"


def train(argv: list[str]) -> int:
    """Load the config, pick the stage's task, train and export."""
    cfg = load_config_from_cli(argv)
    task_factory = get_task_factory(cfg.experiment.train_stage)
    export_dir = Trainer(cfg, task_factory).fit()
    print(f"done: weights exported to {export_dir}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    """Train; on failure print ``error: ...`` and return 2 (1 on a NaN loss), or raise with ``--debug``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    try:
        return train(argv)
    except TrainingInterrupted as err:
        print(f"stopped: {err}", file=sys.stderr)
        return SIGTERM_EXIT
    except Exception as err:  # noqa: BLE001 - every failure becomes one line unless debugging
        if debug:
            raise
        print(f"error: {describe_error(err)}", file=sys.stderr)
        return 1 if isinstance(err, NonFiniteLossError) else 2


if __name__ == "__main__":
    sys.exit(main())
