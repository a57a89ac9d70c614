"""The output folder of a run: one run at a time in it (a lock), an older run moved aside on a fresh start.

``experiment.resume=false`` into a folder that already holds a run (checkpoints, an export, metrics
or its config) first renames that folder to ``<name>.previous-<time>`` (nothing is deleted), so the
new run's checkpoints are never pruned against the old ones and a later resume cannot pick the old
run up. The lock is an ``fcntl.flock`` on ``<output_dir>/.run.lock``, held by the main process for
the life of the Trainer; the kernel drops it when the process dies, so a killed run leaves no stale
lock. The file names the holder (host and pid) for the error message of a second run.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from pathlib import Path
from typing import Optional

from sweettok.training.checkpoint import CHECKPOINT_RE

logger = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"
RUN_FILES = ("config.yaml", "metrics.jsonl", "export")


class OutputFolderBusyError(RuntimeError):
    """Another process is training into the same output folder."""


def holds_a_run(folder: Path) -> bool:
    """Whether ``folder`` holds an earlier run's config, metrics, export or checkpoints."""
    if not folder.is_dir():
        return False
    return any((folder / name).exists() for name in RUN_FILES) or any(
        CHECKPOINT_RE.match(p.name.removesuffix("-nonfinite")) for p in folder.iterdir())


class RunLock:
    """An exclusive lock on an output folder (``release`` or process exit frees it)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / LOCK_FILE
        self._fd: Optional[int] = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self._fd)
            self._fd = None
            raise OutputFolderBusyError(
                f"{folder} is in use by a running training ({holder}); wait for it to end, or set another "
                "experiment.output_dir") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"host {socket.gethostname()} pid {os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Free the lock (idempotent)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def claim_output_folder(folder: Path, resume: bool) -> tuple[RunLock, Optional[Path]]:
    """Lock ``folder``; without ``resume``, move an older run in it aside first. -> (lock, where it went)."""
    lock = RunLock(folder)  # refuses before anything is moved while another run trains here
    if resume or not holds_a_run(folder):
        return lock, None
    moved = folder.with_name(f"{folder.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
    while moved.exists():
        moved = moved.with_name(moved.name + "x")
    os.replace(folder, moved)
    lock.release()
    return RunLock(folder), moved
